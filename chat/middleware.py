"""A request id on every log line of a request and of the generation it started."""

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from chat.logs import request_id as request_id_var

# An incoming X-Request-ID is kept only if it is short and plain: it ends up in logs.
ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _request_id(request: HttpRequest) -> str:
    incoming = request.headers.get("X-Request-ID", "")
    return incoming if ACCEPTABLE_ID.fullmatch(incoming) else uuid.uuid4().hex


@sync_and_async_middleware
def RequestIdMiddleware(
    get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]],
) -> Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]:
    if iscoroutinefunction(get_response):
        answer = cast(Callable[[HttpRequest], Awaitable[HttpResponseBase]], get_response)

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            request_id = _request_id(request)
            request_id_var.set(request_id)
            response = await answer(request)
            response["X-Request-ID"] = request_id
            return response

        return middleware

    answer_now = cast(Callable[[HttpRequest], HttpResponseBase], get_response)

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        request_id = _request_id(request)
        request_id_var.set(request_id)
        response = answer_now(request)
        response["X-Request-ID"] = request_id
        return response

    return sync_middleware
