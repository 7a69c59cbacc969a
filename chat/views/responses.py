"""What responses share: JSON errors, refusals, the SSE response, reading a JSON body,
and the headers of what a share link shows."""

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.request import RawPostDataException
from django.utils.cache import add_never_cache_headers

from chat.refusals import Refused


class BadRequest(Exception):
    """The request's input is not acceptable; its message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def unlisted(response: HttpResponse) -> HttpResponse:
    """Mark what a share link shows (its page, its files): no cache keeps it past the
    link's revocation, no search engine lists it, no referrer carries its token away."""
    add_never_cache_headers(response)
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response


def json_error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def refusal(refused: Refused) -> JsonResponse:
    response = json_error(refused.status, refused.code, refused.message)
    if refused.retry_after is not None:
        response["Retry-After"] = str(refused.retry_after)
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
