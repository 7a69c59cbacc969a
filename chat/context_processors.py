"""What every page's template may use."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def chat(request: HttpRequest) -> dict[str, Any]:
    return {
        "chat_demo": settings.CHAT_DEMO,
        "chat_models": settings.CHAT_MODELS,
        "chat_signup_open": settings.CHAT_SIGNUP_OPEN,
    }
