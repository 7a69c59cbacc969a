"""A conversation as a download: Markdown to read, JSON (the API's shape) to process."""

import json
from typing import Any

from django.utils.text import slugify

from chat.attachments import size_text
from chat.forms import model_label
from chat.models import Attachment, Conversation, Message
from chat.serialize import ConversationDict, attachments_of, conversation_dict, message_dict

SPEAKERS: dict[str, str] = {Message.Role.USER: "You", Message.Role.ASSISTANT: "Assistant"}


def filename(conversation: Conversation, extension: str) -> str:
    return f"{slugify(conversation.title)[:60] or 'chat'}.{extension}"


def as_markdown(conversation: Conversation, messages: list[Message]) -> str:
    lines = [f"# {conversation}", "", f"Model: {model_label(conversation.model)}  "]
    lines += [f"Started: {conversation.created_at:%Y-%m-%d %H:%M} UTC", ""]
    if conversation.system_prompt:
        lines += ["## System prompt", "", conversation.system_prompt.strip(), ""]
    for message in messages:
        lines += [f"## {SPEAKERS.get(message.role, message.role)}", ""]
        if message.reasoning:
            thought = [f"> {line}" if line else ">" for line in message.reasoning.splitlines()]
            lines += ["> **Thinking**", ">", *thought, ""]
        lines += [f"- Tool {tool_call_text(call)}" for call in message.tool_calls]
        if message.tool_calls:
            lines.append("")
        if message.content:
            lines += [message.content.rstrip(), ""]
        attached = attachments_of(message)
        lines += [f"- Attached: {attachment_text(a)}" for a in attached]
        if attached:
            lines.append("")
        if message.status == Message.Status.ERROR:
            lines += [f"*(The answer failed: {message.error_message or message.error_code})*", ""]
        elif message.status == Message.Status.CANCELLED:
            lines += ["*(Stopped)*", ""]
        elif message.status == Message.Status.STREAMING:
            lines += ["*(Still being written)*", ""]
    return "\n".join(lines)


def tool_call_text(call: dict[str, Any]) -> str:
    """Say in a line what a tool call was asked and what it gave."""
    arguments = json.dumps(call["arguments"], ensure_ascii=False)
    if "error" in call:
        outcome = f"failed: {call['error']['message']}"
    elif "result" in call:
        outcome = f"`{json.dumps(call['result'], ensure_ascii=False)}`"
    else:
        outcome = "stopped"
    return f"`{call['name']}` with `{arguments}`: {outcome}"


def attachment_text(attachment: Attachment) -> str:
    """Say in a line what was attached: the bytes stay on the server."""
    shown = attachment.name.replace("`", "'")
    return f"`{shown}` ({attachment.kind}, {attachment.content_type}, {size_text(attachment.size)})"


def as_json(conversation: Conversation, messages: list[Message]) -> str:
    data: ConversationDict = conversation_dict(conversation)
    data["messages"] = [message_dict(message) for message in messages]
    return json.dumps(data, ensure_ascii=False, indent=2)
