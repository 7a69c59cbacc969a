"""
The AI SDK's chat endpoint: a front-end built on `useChat` (its DefaultChatTransport) or
assistant-ui talks to the site unchanged (docs/ai-sdk.md).

The transport names a chat by its own id (`id`, made on first use: one of the user's
conversations) and sends its whole message list; the stored history is the truth, so
only the new user message is taken from it. The answer runs as every other does (the
same pipeline, limits, cache, usage and event log), and its stream is the UI message
stream v1 (chat/ui_stream.py). A reload resumes: `GET <api>/<id>/stream` replays the
running answer from its start, then goes on live; `GET <api>/<id>/messages` gives the
stored history as the SDK's messages, to start from.
"""

import re
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

from chat import db, refusals, services
from chat import generation as generations
from chat.branches import Tree
from chat.eventlog import EventLogUnavailable
from chat.models import Conversation, Generation, Message
from chat.ui_stream import HEADER, UIMessageStream, ui_message
from chat.views.decorators import AuthenticatedRequest, api_stream_view, api_view, logged_in
from chat.views.responses import BadRequest, EventStream, json_body
from chat.views.stream import Wire, event_stream_response

CHAT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
TRIGGERS = ("submit-message", "regenerate-message")


@api_view("POST")
async def chat(request: AuthenticatedRequest) -> HttpResponseBase:
    data = json_body(request)
    chat_id = _chat_id(data.get("id"))
    trigger = data.get("trigger", "submit-message")
    if trigger not in TRIGGERS:
        raise BadRequest("invalid_field", f"'trigger' must be one of: {', '.join(TRIGGERS)}.")
    edits = data.get("messageId") is not None
    content = None if trigger == "regenerate-message" else _new_message(data.get("messages"))
    found = await _existing(request, chat_id)
    try:
        if content is None:
            await _check_regenerate(found, data.get("messageId"))
            assert found is not None
            posted = await services.answer_again(conversation=found, api_key=request.api_key)
        elif found is None:
            posted = await _started(request, chat_id, content)
        elif edits:
            await _check_edit(found, len(data["messages"]))
            posted = await services.answer_again(
                conversation=found, content=content, api_key=request.api_key
            )
        else:
            posted = await services.message_post(
                conversation=found, content=content, api_key=request.api_key
            )
    except Conversation.DoesNotExist:  # removed meanwhile: a refused first post of this chat
        raise refusals.busy() from None
    return _stream(posted[1])


@api_stream_view
async def resume(request: HttpRequest, chat_id: str) -> HttpResponseBase:
    """The chat's running answer from its start, then live; 204 when none runs: also
    when the chat is not made yet (useChat asks on load, before its first message), or is
    another user's (nothing of theirs is told)."""
    user = (await logged_in(request)).user
    conversation = await db.run(_by_client_id, chat_id)
    if conversation is None or conversation.owner_id != user.pk:
        return HttpResponse(status=204)
    running = await db.run(_running, conversation)
    return _stream(running) if running else HttpResponse(status=204)


@api_view("POST")
async def stop(request: AuthenticatedRequest, chat_id: str) -> HttpResponseBase:
    """Stop the chat's running answer, as the page's Stop does."""
    running = await db.run(_running, await _owned(request, chat_id))
    if running is not None:
        try:
            await generations.cancel(running)
        except EventLogUnavailable:
            raise refusals.event_log_unavailable() from None
    return JsonResponse({"stopped": running is not None}, status=202)


@api_view("GET")
async def messages(request: AuthenticatedRequest, chat_id: str) -> HttpResponseBase:
    """The chat's stored messages as the SDK's UIMessages: what useChat starts from."""
    conversation = await _owned(request, chat_id)
    branch = (await Tree.of(conversation)).current(conversation)
    return JsonResponse({"messages": [ui_message(message) for message in branch]})


def _stream(generation: Generation) -> EventStream:
    chunks = UIMessageStream(str(generation.message_id))
    # No `retry:` field: the SDK would read it as a chunk.
    return event_stream_response(generation, wire=Wire(chunks.encode, None, dict([HEADER])))


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
    found = await db.run(_by_client_id, chat_id)
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


async def _check_regenerate(conversation: Conversation | None, message_id: Any) -> None:
    """Regenerate answers the last question anew: the answer named must be the last."""
    if conversation is None:
        raise refusals.nothing_to_answer()
    if message_id is None:
        return
    # The last answer is the last message on screen: a question is never left unanswered.
    if str(conversation.current_leaf_id) != str(message_id):
        raise BadRequest("invalid_field", "Only the last answer can be answered anew.")


async def _check_edit(conversation: Conversation, sent: int) -> None:
    """An edit asks the user's last message anew: the one the client's list ends at."""
    branch = (await Tree.of(conversation)).current(conversation)
    users = [index for index, message in enumerate(branch) if message.role == Message.Role.USER]
    if not users or users[-1] != sent - 1:
        raise BadRequest("invalid_field", "Only the last message can be edited.")


async def _owned(request: AuthenticatedRequest, chat_id: str) -> Conversation:
    found = await db.run(_by_client_id, chat_id)
    if found is None or found.owner_id != request.user.pk:
        raise Http404("No such chat.")
    return found


def _by_client_id(chat_id: str) -> Conversation | None:
    return Conversation.objects.filter(client_id=chat_id).first()


def _running(conversation: Conversation) -> Generation | None:
    running = Generation.objects.running().select_related("message", "conversation")
    return running.filter(conversation=conversation).first()
