"""
Django's ASGI handler, with one change: an event stream gets no thread of its own.

Django runs each request in a ThreadSensitiveContext, whose executor thread lives until
the response ends: for a stream open for minutes, an idle OS thread per reader. The views
in decorators.THREADLESS make their own database calls through db.run (any worker
thread, given back at once); what else is thread-sensitive in such a request (Django's
request signals, a session fallback) runs on asgiref's one process-wide thread.
"""

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, resolve

from chat.views.decorators import THREADLESS


class Handler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _threadless(scope):
            await self.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _threadless(scope: dict[str, Any]) -> bool:
    path = scope["path"].removeprefix(scope.get("root_path", ""))
    try:
        return resolve(path).func in THREADLESS
    except Resolver404:
        return False
