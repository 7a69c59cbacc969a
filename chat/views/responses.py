"""What every API view shares: JSON errors, authentication, reading a JSON body."""

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.request import RawPostDataException

from chat.limits import LimitExceeded

type AsyncView = Callable[..., Awaitable[HttpResponse]]


class BadRequest(Exception):
    """The request's input is not acceptable; its message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def json_error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def too_many_requests(exc: LimitExceeded) -> JsonResponse:
    response = json_error(429, exc.code, exc.message)
    response["Retry-After"] = str(exc.retry_after)
    return response


class EventStream(StreamingHttpResponse):
    """An SSE response that no proxy buffers or transforms.

    `on_close` runs when Django closes the response: after it was sent, or after the
    client left, even before its first byte (when the stream's own code never ran).
    """

    def __init__(
        self, frames: AsyncIterator[bytes], on_close: Callable[[], None] | None = None
    ) -> None:
        super().__init__(frames, content_type="text/event-stream; charset=utf-8")
        self["Cache-Control"] = "no-cache, no-transform"
        self["X-Accel-Buffering"] = "no"
        self._on_close = on_close

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._on_close:
                self._on_close()


def api_view(*methods: str) -> Callable[[AsyncView], AsyncView]:
    """Make an async view an API endpoint: allowed methods, a session, JSON errors."""

    def decorator(view: AsyncView) -> AsyncView:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = json_error(
                    405, "method_not_allowed", f"Use {' or '.join(methods)} here."
                )
                response["Allow"] = ", ".join(methods)
                return response
            user = await request.auser()
            if not user.is_authenticated:
                return json_error(401, "not_authenticated", "Log in to use the API.")
            try:
                return await view(request, *args, **kwargs)
            except BadRequest as exc:
                return json_error(400, exc.code, exc.message)

        return wrapper

    return decorator


def json_body(request: HttpRequest) -> dict[str, Any]:
    """Return the request body as a JSON object, or raise BadRequest."""
    try:
        data = json.loads(request.body or b"{}")
    except RequestDataTooBig:
        raise BadRequest("too_long", "The body is larger than this server accepts.") from None
    except (ValueError, RecursionError, RawPostDataException):
        # RecursionError: nested deeper than the parser goes. RawPostDataException: sent as
        # multipart/form-data, which the CSRF check has already read as a form.
        raise BadRequest("invalid_json", "The body is not valid UTF-8 JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("invalid_json", "The body must be a JSON object.")
    return data


def text_field(data: dict[str, Any], name: str, *, max_length: int, required: bool = False) -> str:
    """Return a string field of a JSON body, checked, or raise BadRequest."""
    value = data.get(name, "")
    if not isinstance(value, str):
        raise BadRequest("invalid_field", f"'{name}' must be a string.")
    if required and not value.strip():
        raise BadRequest("empty_field", f"'{name}' must not be empty.")
    if len(value) > max_length:
        raise BadRequest("too_long", f"'{name}' is longer than {max_length} characters.")
    if "\x00" in value or not _encodable(value):
        raise BadRequest("invalid_text", f"'{name}' holds characters that cannot be stored.")
    return value


def _encodable(value: str) -> bool:
    # JSON can carry lone surrogates ("\ud800"), which no UTF-8 store accepts.
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
