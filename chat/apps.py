from django.apps import AppConfig
from django.core.signals import request_started
from django.db import close_old_connections, reset_queries


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from chat import checks  # noqa: F401  (registers the system checks)

        tidy_at_request_end_only()


def tidy_at_request_end_only() -> None:
    """Disconnect Django's request_started receivers, which tidy the database connections
    of the request's thread.

    They are sync, so each request made a trip to a thread for them before its view: for
    the API (no thread of its own, chat/handler.py) to asgiref's shared thread, which a
    busy event loop makes long. Under ASGI a page starts on a new thread, with nothing to
    tidy; what the shared thread holds is tidied at every API request's end, on it, by
    request_finished (Django closes each response there), and after each answer
    (db.given_back).
    """
    request_started.disconnect(close_old_connections)
    request_started.disconnect(reset_queries)
