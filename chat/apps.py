from django.apps import AppConfig
from django.core.signals import request_started
from django.db import close_old_connections, reset_queries


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from chat import checks  # noqa: F401  (registers the system checks)

        # Django tidies the database connections of a request's thread as the request
        # starts. Under ASGI a request starts on a new thread of its own (a page), or on
        # none (the API, chat/handler.py): there is nothing to tidy yet, and for the API
        # these sync receivers were a trip to asgiref's shared thread before every view,
        # which a busy event loop made long. The request's end still tidies
        # (request_finished).
        request_started.disconnect(close_old_connections)
        request_started.disconnect(reset_queries)
