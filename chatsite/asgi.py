"""
ASGI entry point: Django for HTTP, and the server's lifespan for a graceful shutdown.

runserver (daphne) sends no lifespan events; uvicorn and granian do, after they stop
accepting connections and before the process exits.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does, for our own handler

# These need the apps that the line above loads.
from chat.handler import Handler  # noqa: E402
from chat.lifespan import Receive, Scope, Send, lifespan  # noqa: E402

django_application = Handler()


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        await django_application(scope, receive, send)
