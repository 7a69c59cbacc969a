"""
The stateless streaming endpoints: a completion of one prompt, and a chat completion of
a message list the client supplies. Each answers in its POST response, as SSE.
"""

import math
from typing import Any

from django.conf import settings
from django.http import HttpResponseBase

from chat import completions, context, db, limits, sse
from chat.answering import Prepared
from chat.views.decorators import AuthenticatedRequest, api_view
from chat.views.responses import BadRequest, EventStream, json_body, text_field

ROLES = ("system", "user", "assistant")
# Far more than any context window holds; refuses a body built to exhaust the server.
MAX_MESSAGES = 1000
MAX_TOKENS_LIMIT = 1_000_000


@api_view("POST")
async def completion(request: AuthenticatedRequest) -> HttpResponseBase:
    """Answer `{"prompt": str}` as a single user message."""
    data = json_body(request)
    prompt = text_field(data, "prompt", max_length=settings.CHAT_MAX_MESSAGE_CHARS, required=True)
    return await _answer(request, data, [{"role": "user", "content": prompt}])


@api_view("POST")
async def chat_completion(request: AuthenticatedRequest) -> HttpResponseBase:
    """Answer `{"messages": [{"role", "content"}, ...]}`, the last one from the user."""
    data = json_body(request)
    return await _answer(request, data, message_list(data))


async def _answer(
    request: AuthenticatedRequest, data: dict[str, Any], messages: list[dict[str, str]]
) -> HttpResponseBase:
    prepared = Prepared.of(
        build_request(data, messages), use_cache=_flag(data, "cache", default=True)
    )
    await db.run(limits.admit, request.user)  # or Refused
    slot = limits.Slot(request.user.pk)
    # The stream gives the slot back as it ends; closing the response does it when the
    # client left before the stream began.
    frames = sse.frames(
        completions.batches(slot, prepared, settings.CHAT_SSE_HEARTBEAT),
        retry_ms=settings.CHAT_SSE_RETRY_MS,
    )
    return EventStream(frames, on_close=slot.release)


def message_list(data: dict[str, Any]) -> list[dict[str, str]]:
    """Return the checked `messages` of a chat completion body, or raise BadRequest."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("invalid_field", "'messages' must be a non-empty list.")
    if len(messages) > MAX_MESSAGES:
        raise BadRequest("too_long", f"'messages' holds more than {MAX_MESSAGES} messages.")
    checked = [_message(item, index) for index, item in enumerate(messages)]
    if checked[-1]["role"] != "user":
        raise BadRequest("invalid_field", "The last of 'messages' must have the role 'user'.")
    return checked


def _message(item: Any, index: int) -> dict[str, str]:
    if not isinstance(item, dict) or set(item) != {"role", "content"}:
        raise BadRequest(
            "invalid_field", f"messages[{index}] must be an object with 'role' and 'content'."
        )
    if item["role"] not in ROLES:
        raise BadRequest(
            "invalid_field", f"messages[{index}].role must be one of: {', '.join(ROLES)}."
        )
    content = text_field(item, "content", max_length=settings.CHAT_MAX_MESSAGE_CHARS)
    if item["role"] == "user" and not content.strip():
        raise BadRequest("empty_field", f"messages[{index}].content must not be empty.")
    return {"role": item["role"], "content": content}


def build_request(data: dict[str, Any], messages: list[dict[str, str]]) -> dict[str, Any]:
    """Return the upstream request: model, parameters, and the messages that fit."""
    model = text_field(data, "model", max_length=100) or settings.CHAT_MODEL
    if model not in settings.CHAT_MODELS:
        raise BadRequest(
            "unknown_model", f"'model' must be one of: {', '.join(settings.CHAT_MODELS)}."
        )
    request: dict[str, Any] = {
        "model": model,
        "messages": context.fit(messages, model, settings.CHAT_CONTEXT_TOKENS),
    }
    if "temperature" in data:
        request["temperature"] = _number(data, "temperature", 0, 2)
    if "max_tokens" in data:
        request["max_tokens"] = _integer(data, "max_tokens", 1, MAX_TOKENS_LIMIT)
    return request


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float:
    value = data[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise BadRequest("invalid_field", f"'{name}' must be a number from {low} to {high}.")
    return value


def _integer(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest("invalid_field", f"'{name}' must be a whole number from {low} to {high}.")
    return value


def _flag(data: dict[str, Any], name: str, *, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest("invalid_field", f"'{name}' must be true or false.")
    return value
