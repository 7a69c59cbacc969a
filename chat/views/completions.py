"""
The stateless streaming endpoints: a completion of one prompt, and a chat completion of
a message list the client supplies. Each answers in its POST response, as SSE.
"""

import math
from typing import Any

from django.conf import settings
from django.http import HttpResponseBase

from chat import completions, context, db, limits, sse, tools
from chat.answering import Prepared
from chat.views.decorators import AuthenticatedRequest, api_view
from chat.views.responses import BadRequest, EventStream, json_body, text_field

ROLES = ("system", "user", "assistant", "tool")
MAX_ID_CHARS = 100
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
    """Answer `{"messages": [{"role", "content"}, ...]}`, the last one from the user.

    The history may hold an assistant's tool calls and their results, in OpenAI's shape.
    """
    data = json_body(request)
    return await _answer(request, data, message_list(data))


async def _answer(
    request: AuthenticatedRequest, data: dict[str, Any], messages: list[dict[str, Any]]
) -> HttpResponseBase:
    upstream = build_request(data, messages)
    prepared = Prepared.of(
        upstream,
        use_cache=_flag(data, "cache", default=True),
        tools=tools.offered_to(upstream["model"]),
        user=request.user,
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


def message_list(data: dict[str, Any], *, last_from_user: bool = True) -> list[dict[str, Any]]:
    """Return the checked `messages` of a chat completion body, or raise BadRequest.

    The last message is the user's, unless `last_from_user` is false (a client that runs
    its own tools sends their results last).
    """
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("invalid_field", "'messages' must be a non-empty list.")
    if len(messages) > MAX_MESSAGES:
        raise BadRequest("too_long", f"'messages' holds more than {MAX_MESSAGES} messages.")
    checked = [_message(item, index) for index, item in enumerate(messages)]
    if last_from_user and checked[-1]["role"] != "user":
        raise BadRequest("invalid_field", "The last of 'messages' must have the role 'user'.")
    return checked


def _message(item: Any, index: int) -> dict[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(item, dict) or item.get("role") not in ROLES:
        raise BadRequest(
            "invalid_field", f"{where} must be an object whose role is one of: {', '.join(ROLES)}."
        )
    role = item["role"]
    if role == "assistant" and "tool_calls" in item:
        return _tool_calling(item, where)
    if role == "tool":
        _keys(
            item, {"role", "tool_call_id", "content"}, where, required={"content", "tool_call_id"}
        )
        call_id = text_field(item, "tool_call_id", max_length=MAX_ID_CHARS, required=True)
        content = text_field(item, "content", max_length=settings.CHAT_MAX_MESSAGE_CHARS)
        return {"role": role, "tool_call_id": call_id, "content": content}
    _keys(item, {"role", "content"}, where, required={"content"})
    content = text_field(item, "content", max_length=settings.CHAT_MAX_MESSAGE_CHARS)
    if role == "user" and not content.strip():
        raise BadRequest("empty_field", f"{where}.content must not be empty.")
    return {"role": role, "content": content}


def _tool_calling(item: dict[str, Any], where: str) -> dict[str, Any]:
    """Check an assistant message that called tools: its calls in OpenAI's shape."""
    _keys(item, {"role", "content", "tool_calls"}, where, required=set())
    content = item.get("content")
    if content is not None:
        content = text_field(item, "content", max_length=settings.CHAT_MAX_MESSAGE_CHARS)
    calls = item["tool_calls"]
    if not isinstance(calls, list) or not calls or len(calls) > MAX_MESSAGES:
        raise BadRequest("invalid_field", f"{where}.tool_calls must be a non-empty list.")
    checked = []
    for number, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(call, dict)
            or set(call) - {"id", "type", "function"}
            or call.get("type", "function") != "function"
            or not isinstance(function, dict)
            or set(function) != {"name", "arguments"}
        ):
            raise BadRequest(
                "invalid_field",
                f"{where}.tool_calls[{number}] must be "
                '{"id", "type": "function", "function": {"name", "arguments"}}.',
            )
        checked.append(
            {
                "id": text_field(call, "id", max_length=MAX_ID_CHARS, required=True),
                "type": "function",
                "function": {
                    "name": text_field(function, "name", max_length=64, required=True),
                    "arguments": text_field(
                        function, "arguments", max_length=settings.CHAT_MAX_MESSAGE_CHARS
                    ),
                },
            }
        )
    return {"role": "assistant", "content": content, "tool_calls": checked}


def _keys(item: dict[str, Any], allowed: set[str], where: str, *, required: set[str]) -> None:
    if not required <= set(item) <= allowed:
        raise BadRequest(
            "invalid_field",
            f"{where} must have {', '.join(sorted(required))} and no fields but "
            f"{', '.join(sorted(allowed))}.",
        )


def build_request(data: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
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
