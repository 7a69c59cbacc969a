"""
Personal API keys: a user's scripts and tools authenticate with `Authorization: Bearer`.

A key is `sk-chat-` and 43 random URL-safe characters, shown to its owner once. The
database keeps its first characters (to find it, and to show which key it is) and a
SHA-256 hash of the whole (compared in constant time): a key is as random as a hash
input needs to be, so no slow hash is needed. A revoked or expired key stops working at
once; revoked keys stay, so the usage they were charged with still names them.
"""

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from chat import limits
from chat.models import ApiKey

BEARER_PATHS = ("/api/", "/v1/")  # pages keep to sessions
PREFIX = "sk-chat-"
SHOWN_CHARS = len(PREFIX) + 8  # what identifies a key in lists and lookups
# last_used_at is written at most this often per key: not a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
GUESS_WINDOW = 3600  # seconds, as the login's window per address


class TooManyKeys(Exception):
    pass


def bearer_secret(request: HttpRequest) -> str | None:
    """Return the key a request to the API brings as `Authorization: Bearer <key>`."""
    if not request.path.startswith(BEARER_PATHS):
        return None
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else None


def create(user: Any, name: str, expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Make a key for the user; return it and its secret, which is not kept."""
    secret = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        # Locks the user's row: two creations at once cannot both pass the limit.
        type(user).objects.select_for_update().filter(pk=user.pk).first()
        if ApiKey.objects.active().filter(user=user).count() >= settings.CHAT_MAX_API_KEYS:
            raise TooManyKeys
        key = ApiKey.objects.create(
            user=user,
            name=name,
            prefix=secret[:SHOWN_CHARS],
            key_hash=_hash(secret),
            expires_at=expires_at,
        )
    return key, secret


def authenticate(secret: str) -> ApiKey | None:
    """Return the active key this secret is, with its user; None for any other secret."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    candidates = (
        ApiKey.objects.active()
        .select_related("user")
        .filter(prefix=secret[:SHOWN_CHARS], user__is_active=True)
    )
    digest = _hash(secret)
    return next((key for key in candidates if hmac.compare_digest(key.key_hash, digest)), None)


def revoke(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at=None).update(revoked_at=timezone.now())


def guess_window(address: str) -> limits.Window:
    """Wrong keys from one address count against the login's limit per address."""
    return limits.Window(
        f"chat:key-guess:{address}", settings.CHAT_LOGIN_FAILURES_PER_ADDRESS, GUESS_WINDOW
    )


def unnoted_use(key: ApiKey) -> bool:
    """Whether this use of the key is news: its last use was noted a while ago."""
    return key.last_used_at is None or timezone.now() - key.last_used_at >= LAST_USED_RESOLUTION


def note_use(key: ApiKey) -> None:
    key.last_used_at = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=key.last_used_at)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
