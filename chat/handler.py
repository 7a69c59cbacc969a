"""
Django's ASGI handler, with two changes: the API's requests get no thread of their own,
and a view's writes wait for their turn a bounded time (db.bounded_writes).

Django runs each request in a ThreadSensitiveContext, whose executor thread is started
for the request and lives until the response ends: for a stream open for minutes, an
idle OS thread per reader, and for every request a thread started, a database connection
opened and both closed. The views in decorators.THREADLESS (the JSON API, its streams,
/v1) make their database calls through db.run, on the event loop's worker threads;
Django runs what follows their response (request_finished, closing it) on asgiref's one
process-wide thread; nothing before their view goes there (chat/apps.py).
"""

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase

from chat import db

THREADLESS_PREFIXES = ("/api/", "/v1/")


class Handler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _threadless(scope):
            await self.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        # The middleware and the view: not the stream sent after them, whose reads may
        # have to end an answer (replay.py) and must not give up on a busy database.
        with db.bounded_writes():
            return await super().get_response_async(request)


def _threadless(scope: dict[str, Any]) -> bool:
    return threadless_path(scope["path"].removeprefix(scope.get("root_path", "")))


def threadless_path(path: str) -> bool:
    """Tell whether a path is the API's, whose views are all in decorators.THREADLESS
    (tests/test_deploy.py checks it): a prefix, not a second resolve of every URL."""
    return path.startswith(THREADLESS_PREFIXES)
