"""
What the model reads of a user's message with attachments.

Text files and PDFs go in as text blocks (the name, then the text fenced), trimmed to
fit the context; images go as OpenAI image content parts to a model that sees images
(a `CHAT_MODELS` entry with "vision": true, and the demo model), and are named as not
shown to one that does not.

A generation's stored request refers to an image as `attachment:<id>`; `expanded()`
puts its bytes in as a data URL just before the request goes upstream, so the database
keeps every request small however many images a conversation holds.
"""

import base64
import re
from collections import defaultdict
from typing import Any

from django.conf import settings

from chat import context
from chat.demo import DEMO_MODEL
from chat.models import Attachment, Conversation

REFERENCE = "attachment:"
TIMES = "\u00d7"
KIND_WORDS: dict[str, str] = {Attachment.Kind.TEXT: "text file", Attachment.Kind.PDF: "PDF"}
BACKTICKS = re.compile(r"`+")
TRIMMED = "[The rest was left out to fit the context.]"


def sees_images(model: str) -> bool:
    return model == DEMO_MODEL or model in settings.CHAT_VISION_MODELS


def of_conversation(conversation: Conversation) -> dict[Any, list[Attachment]]:
    """Return the conversation's sent attachments by message id, in one query."""
    grouped: dict[Any, list[Attachment]] = defaultdict(list)
    sent = Attachment.objects.filter(message__conversation=conversation).order_by("created_at")
    for attachment in sent.defer("file", "thumbnail"):
        grouped[attachment.message_id].append(attachment)
    return grouped


def content(
    text: str, attached: list[Attachment], model: str, budget: int
) -> str | list[dict[str, Any]]:
    """Return a user message's upstream content: its text, its attachments' blocks after
    it within `budget` tokens, and image parts for a model that sees images."""
    vision = sees_images(model)
    images = [a for a in attached if a.kind == Attachment.Kind.IMAGE]
    blocks = [text] if text else []
    for image in images:
        label = f"{image.name} ({image.width}{TIMES}{image.height})"
        blocks.append(
            f"[Attached image: {label}]"
            if vision
            else f"[Image not shown: {label}; this model does not see images]"
        )
    room = budget - context.count_tokens("\n\n".join(blocks), model)[0]
    room -= context.IMAGE_TOKENS * len(images) if vision else 0
    for attached_file in (a for a in attached if a.kind != Attachment.Kind.IMAGE):
        block = _file_block(attached_file, model, room)
        room -= context.count_tokens(block, model)[0]
        blocks.append(block)
    joined = "\n\n".join(blocks)
    if not (vision and images):
        return joined
    parts: list[dict[str, Any]] = [{"type": "text", "text": joined}]
    for image in images:
        parts.append({"type": "image_url", "image_url": {"url": f"{REFERENCE}{image.pk}"}})
    return parts


def _file_block(attached: Attachment, model: str, room: int) -> str:
    header = f"[Attached {KIND_WORDS.get(attached.kind, 'file')}: {attached.name}]"
    # The header, the fences and the note cost about this many tokens.
    body = context.trimmed(attached.text, model, room - 40)
    longest = max((len(run) for run in BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    block = f"{header}\n{fence}\n{body}\n{fence}"
    return block if body == attached.text else f"{block}\n{TRIMMED}"


def references(request: dict[str, Any]) -> list[str]:
    """Return the ids of the images the request refers to (none: it goes as it is)."""
    return [
        part["image_url"]["url"].removeprefix(REFERENCE)
        for message in request.get("messages", [])
        for part in _image_parts(message)
    ]


def expanded(request: dict[str, Any], owner: Any) -> dict[str, Any]:
    """Return the request with each image reference replaced by the image as a data URL:
    only the owner's images, whatever a stored request says."""
    wanted = references(request)
    if not wanted:
        return request
    found = {str(a.pk): a for a in Attachment.objects.owned_by(owner).filter(pk__in=wanted)}
    messages = []
    for message in request["messages"]:
        if _image_parts(message):
            parts = [_with_data(part, found) for part in message["content"]]
            message = {**message, "content": parts}
        messages.append(message)
    return {**request, "messages": messages}


def _image_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    parts = message.get("content")
    if not isinstance(parts, list):
        return []
    return [
        part
        for part in parts
        if part.get("type") == "image_url" and str(part["image_url"]["url"]).startswith(REFERENCE)
    ]


def _with_data(part: dict[str, Any], found: dict[str, Attachment]) -> dict[str, Any]:
    if part.get("type") != "image_url":
        return part
    url = str(part["image_url"]["url"])
    if not url.startswith(REFERENCE):
        return part
    attachment = found.get(url.removeprefix(REFERENCE))
    if attachment is None:
        return {"type": "text", "text": "[An image that has since been deleted.]"}
    try:
        with attachment.file.open("rb") as opened:
            data = base64.b64encode(opened.read()).decode()
    except OSError:
        return {"type": "text", "text": f"[The image {attachment.name} could not be read.]"}
    return {
        "type": "image_url",
        "image_url": {"url": f"data:{attachment.content_type};base64,{data}"},
    }
