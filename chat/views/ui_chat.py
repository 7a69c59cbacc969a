"""
The AI SDK's chat endpoint: a front-end built on `useChat` (its DefaultChatTransport) or
assistant-ui talks to the site unchanged (docs/ai-sdk.md).

The transport names a chat by its own id (`id`, made on first use: one of the user's
conversations) and sends its whole message list; the stored history is the truth, so
only the new user message is taken from it. The answer runs as every other does (the
same pipeline, limits, cache, usage and event log), and its stream is the UI message
stream v1 (chat/ui_stream.py). A reload resumes: `GET <api>/<id>/stream` replays the
running answer from its start, then goes on live.
"""

import re
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.http import Http404, HttpResponse, HttpResponseBase, JsonResponse

from chat import db, refusals, services, sse
from chat import generation as generations
from chat.models import Conversation, Generation
from chat.replay import events_after
from chat.ui_stream import HEADER, UIMessageStream
from chat.views.decorators import AuthenticatedRequest, api_view
from chat.views.responses import BadRequest, EventStream, json_body

CHAT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
TRIGGERS = ("submit-message", "regenerate-message")


@api_view("POST")
async def chat(request: AuthenticatedRequest) -> HttpResponseBase:
    data = json_body(request)
    chat_id = _chat_id(data.get("id"))
    trigger = data.get("trigger", "submit-message")
    if trigger not in TRIGGERS:
        raise BadRequest("invalid_field", f"'trigger' must be one of: {', '.join(TRIGGERS)}.")
    content = None if trigger == "regenerate-message" else _new_message(data.get("messages"))
    found = await _existing(request, chat_id)
    if content is None:
        if found is None:
            raise refusals.nothing_to_answer()
        posted = await services.answer_again(conversation=found, api_key=request.api_key)
    elif found is None:
        posted = await _started(request, chat_id, content)
    else:
        posted = await services.message_post(
            conversation=found, content=content, api_key=request.api_key
        )
    return _stream(posted[1])


@api_view("GET")
async def resume(request: AuthenticatedRequest, chat_id: str) -> HttpResponseBase:
    """The chat's running answer from its start, then live; 204 when none runs."""
    running = await _running(await _owned(request, chat_id))
    return _stream(running) if running else HttpResponse(status=204)


@api_view("POST")
async def stop(request: AuthenticatedRequest, chat_id: str) -> HttpResponseBase:
    """Stop the chat's running answer, as the page's Stop does."""
    running = await _running(await _owned(request, chat_id))
    if running is not None:
        await generations.cancel(running)
    return JsonResponse({"stopped": running is not None}, status=202)


def _stream(generation: Generation) -> EventStream:
    chunks = UIMessageStream(str(generation.message_id))
    batches = events_after(generation, 0, settings.CHAT_SSE_HEARTBEAT)
    # No `retry:` field: the SDK would read it as a chunk.
    response = EventStream(sse.frames(batches, retry_ms=None, encode=chunks.encode))
    response[HEADER[0]] = HEADER[1]
    return response


def _chat_id(value: Any) -> str:
    if not isinstance(value, str) or not CHAT_ID.fullmatch(value):
        raise BadRequest("invalid_field", "'id' must be 1 to 100 of A-Z, a-z, 0-9, _ and -.")
    return value


def _new_message(messages: Any) -> str:
    """Return the text of the last user message the transport sent."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("invalid_field", "'messages' must be a non-empty list.")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        raise BadRequest("invalid_field", "The last of 'messages' must be the user's.")
    parts = last.get("parts")
    if not isinstance(parts, list) or not all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in parts
    ):
        raise BadRequest("invalid_field", "The user's message must have text parts only.")
    text = "".join(part["text"] for part in parts)
    if not text.strip():
        raise BadRequest("empty_field", "The user's message must not be empty.")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise BadRequest(
            "too_long", f"The message is longer than {settings.CHAT_MAX_MESSAGE_CHARS} characters."
        )
    return text


async def _existing(request: AuthenticatedRequest, chat_id: str) -> Conversation | None:
    """Return the user's conversation of this chat id, None if there is none; another's: 404."""
    found = await Conversation.objects.filter(client_id=chat_id).afirst()
    if found is not None and found.owner_id != request.user.pk:
        raise Http404("No such chat.")
    return found


async def _started(request: AuthenticatedRequest, chat_id: str, content: str) -> services.Posted:
    """Make the chat's conversation with its first message (none if refused)."""
    try:
        return await services.conversation_start(
            owner=request.user, content=content, client_id=chat_id, api_key=request.api_key
        )
    except IntegrityError:  # the same new chat, posted twice at once
        raise refusals.busy() from None


async def _owned(request: AuthenticatedRequest, chat_id: str) -> Conversation:
    found = await Conversation.objects.owned_by(request.user).filter(client_id=chat_id).afirst()
    if found is None:
        raise Http404("No such chat.")
    return found


async def _running(conversation: Conversation) -> Generation | None:
    running = Generation.objects.running().select_related("message", "conversation")
    return await db.run(lambda: running.filter(conversation=conversation).first())
