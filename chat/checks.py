"""
System checks in place of three of Django's deploy checks.

Django's security.W001, W002 and W003 look for its own middleware by dotted path; this
site runs the same classes on the event loop (chat/inline_middleware.py), under other
paths. These checks look for those, with the same warnings.
"""

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register

REQUIRED = {
    "chat.inline_middleware.SecurityMiddleware": (
        "security.W001",
        "HSTS, nosniff, the referrer policy and the HTTPS redirect would have no effect.",
    ),
    "chat.inline_middleware.XFrameOptionsMiddleware": (
        "security.W002",
        "pages would be served without an X-Frame-Options header.",
    ),
    "chat.inline_middleware.CsrfViewMiddleware": (
        "security.W003",
        "nothing would protect the site against cross-site request forgery.",
    ),
}


@register(Tags.security, deploy=True)
def inline_security_middleware(**kwargs: Any) -> list[Warning]:
    return [
        Warning(f"{path} is not in MIDDLEWARE: {consequence}", id=f"chat.{check_id[-4:]}")
        for path, (check_id, consequence) in REQUIRED.items()
        if path not in settings.MIDDLEWARE
    ]
