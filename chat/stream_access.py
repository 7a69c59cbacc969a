"""
Who may read an answer's stream, decided without the session store.

A stream stays open for minutes, and thousands may be open at once, each opened by a
request: the stream URLs the server hands a logged-in client carry a token, so that
opening one reads neither the session nor the user. The token is an HMAC of the
generation's id and the client's session key; the stream view checks it against the
session cookie the client sends along, with no query: a URL copied elsewhere is worth
nothing without that cookie.
A token is good while its generation is younger than CHAT_STREAM_TOKEN_MAX_AGE; without a
good one, the stream view checks the session as every other view does.
"""

from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from chat.models import Generation

SALT = "chat.stream_access"


def stream_url(request: HttpRequest, generation: Generation) -> str:
    """Return where this client reads the generation's stream."""
    url = generation.get_stream_url()
    session = getattr(request, "session", None)  # none without SessionMiddleware
    session_key = session.session_key if session is not None else None
    if not session_key:
        return url
    return f"{url}?{urlencode({'token': _token(generation, session_key)})}"


def token_admits(request: HttpRequest, generation: Generation) -> bool:
    """Tell whether the request's token admits it to the generation's stream."""
    token = request.GET.get("token")
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not token or not session_key:
        return False
    fresh = timezone.now() - generation.created_at < timedelta(
        seconds=settings.CHAT_STREAM_TOKEN_MAX_AGE
    )
    return fresh and constant_time_compare(token, _token(generation, session_key))


def _token(generation: Generation, session_key: str) -> str:
    return salted_hmac(SALT, f"{generation.pk}:{session_key}", algorithm="sha256").hexdigest()
