"""
The OpenAI-compatible endpoint, for any OpenAI client (`base_url=<site>/v1`, a personal
API key): `GET /v1/models` and `POST /v1/chat/completions`, in OpenAI's own wire format
and with its error objects, so the SDKs raise their own exception classes. The user's
limits, cache and usage apply as in the chat; the site's own tools are not offered here,
and a client's `tools` go to the model, its tool calls back to the client unchanged.
"""

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from chat import completions, db, limits, openai_wire, refusals, sse
from chat.answering import Prepared
from chat.events import ERROR
from chat.openai_wire import error_body
from chat.refusals import Refused
from chat.views.completions import build_request, message_list
from chat.views.decorators import (
    THREADLESS,
    AuthenticatedRequest,
    NotLoggedIn,
    Response,
    logged_in,
)
from chat.views.responses import BadRequest, EventStream, json_body

# Fields of a message that an SDK's own objects carry back (a previous answer appended to
# the history as it came): dropped, as OpenAI's API takes them and ignores them.
IGNORED_MESSAGE_FIELDS = {"name", "refusal", "annotations", "audio", "function_call", "reasoning"}
# Parameters passed on to the model as they are, once their type is checked.
PASSED_ON: dict[str, type | tuple[type, ...]] = {
    "top_p": (int, float),
    "stop": (str, list),
    "seed": int,
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "tool_choice": (str, dict),
    "parallel_tool_calls": bool,
    "response_format": dict,
}
# Seconds a client is told to wait when the model's provider rate-limits us: it does not
# say for how long through the pipeline.
UPSTREAM_RETRY_AFTER = 5
MAX_TOOLS = 128


def openai_view(*methods: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """An endpoint of /v1: an API key (or a session), OpenAI's error objects, and no
    thread of its own (chat/handler.py)."""

    def decorator(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest) -> HttpResponseBase:
            if request.method not in methods:
                return _error(405, "method_not_allowed", f"Use {' or '.join(methods)} here.")
            try:
                response = await view(await logged_in(request))
            except NotLoggedIn:
                return _error(401, "invalid_api_key", "Send your API key as a Bearer token.")
            except BadRequest as exc:
                if exc.code == "unknown_model":
                    return _error(404, "model_not_found", exc.message)
                return _error(400, exc.code, exc.message)
            except Refused as exc:
                return _error(exc.status, exc.code, exc.message, retry_after=exc.retry_after)
            except DatabaseError as exc:
                if not db.overloaded(exc):
                    raise
                busy = refusals.overloaded()
                return _error(busy.status, busy.code, busy.message, retry_after=busy.retry_after)
            return response

        THREADLESS.add(wrapper)
        return wrapper

    return decorator


def _error(status: int, code: str, message: str, *, retry_after: int | None = None) -> JsonResponse:
    kind = "server_error" if status >= 500 else "requests" if status == 429 else None
    response = JsonResponse(
        error_body(message, code, kind or "invalid_request_error"), status=status
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


@openai_view("GET")
async def models(request: AuthenticatedRequest) -> HttpResponseBase:
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "chat"}
        for name in settings.CHAT_MODELS
    ]
    return JsonResponse({"object": "list", "data": data})


@openai_view("POST")
async def chat_completions(request: AuthenticatedRequest) -> HttpResponseBase:
    # OpenAI takes null for any parameter left to its default.
    data = {name: value for name, value in json_body(request).items() if value is not None}
    upstream = upstream_request(data)
    stream = _flag(data, "stream")
    options = data.get("stream_options", {})
    if not isinstance(options, dict):
        raise BadRequest("invalid_field", "'stream_options' must be an object.")
    include_usage = _flag(options, "include_usage")
    prepared = Prepared.of(upstream, use_cache=True, user=request.user)
    await db.run(limits.admit, request.user)  # or Refused
    slot = limits.Slot(request.user.pk)
    batches = completions.batches(
        slot, prepared, settings.CHAT_SSE_HEARTBEAT, api_key=request.api_key
    )
    if stream:
        chunks = openai_wire.ChunkStream(upstream["model"], include_usage=include_usage)
        # No `retry:` field: OpenAI's SDKs would read it as an event with empty data.
        frames = sse.frames(batches, retry_ms=None, encode=chunks.encode)
        return EventStream(frames, on_close=slot.release)
    try:
        events = [event async for batch in batches for event in batch]
    finally:
        slot.release()
    ended = events[-1]
    if ended.kind == ERROR:
        code = ended.data["code"]
        status = openai_wire.error_status(code)
        retry = UPSTREAM_RETRY_AFTER if status == 429 else None
        return _error(status, code, ended.data["message"], retry_after=retry)
    return JsonResponse(openai_wire.completion(upstream["model"], events))


def upstream_request(data: dict[str, Any]) -> dict[str, Any]:
    """Return the request for the model from a Chat Completions body, or raise BadRequest."""
    if "model" not in data:
        raise BadRequest("invalid_field", "'model' is required.")
    if data.get("n", 1) != 1:
        raise BadRequest("invalid_field", "Only n=1 is supported.")
    messages = data.get("messages")
    if isinstance(messages, list):
        messages = [_normalized(message) for message in messages]
    request = build_request(data, message_list({"messages": messages}, last_from_user=False))
    if "max_completion_tokens" in data:
        request["max_completion_tokens"] = _whole(data, "max_completion_tokens")
    for name, kinds in PASSED_ON.items():
        if name in data:
            if isinstance(data[name], bool) and kinds is not bool:
                raise BadRequest("invalid_field", f"'{name}' has the wrong type.")
            if not isinstance(data[name], kinds):
                raise BadRequest("invalid_field", f"'{name}' has the wrong type.")
            request[name] = data[name]
    if "tools" in data:
        request["tools"] = _tools(data["tools"])
    return request


def _normalized(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    kept = {
        key: value
        for key, value in message.items()
        if key not in IGNORED_MESSAGE_FIELDS and (value is not None or key == "content")
    }
    if kept.get("role") == "developer":
        kept["role"] = "system"
    content = kept.get("content")
    if isinstance(content, list):
        kept["content"] = _text_parts(content)
    return kept


def _text_parts(parts: list[Any]) -> str:
    if not all(isinstance(part, dict) and part.get("type") == "text" for part in parts):
        raise BadRequest("invalid_field", "Only text content is supported.")
    texts = [part.get("text") for part in parts]
    if not all(isinstance(text, str) for text in texts):
        raise BadRequest("invalid_field", "A text part's 'text' must be a string.")
    return "".join(texts)


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise BadRequest("invalid_field", f"'tools' must be a list of at most {MAX_TOOLS}.")
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(
                "invalid_field",
                'Each tool must be {"type": "function", "function": {"name", ...}}.',
            )
    return tools


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest("invalid_field", f"'{name}' must be true or false.")
    return value


def _whole(data: dict[str, Any], name: str) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise BadRequest("invalid_field", f"'{name}' must be a whole number from 1.")
    return value
