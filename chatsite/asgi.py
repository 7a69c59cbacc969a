"""
ASGI entry point: Django for HTTP, and the server's lifespan for a graceful shutdown.

runserver (daphne) sends no lifespan events; uvicorn and granian do, after they stop
accepting connections and before the process exits.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

django_application = get_asgi_application()

from chat.lifespan import Receive, Scope, Send, lifespan  # noqa: E402  (needs the apps that the line above loads)


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        await django_application(scope, receive, send)
