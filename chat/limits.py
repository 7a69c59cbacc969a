"""
Per-user limits: messages per minute, hour and day; answers streaming at once; tokens a
month. Counters live in Django's cache (atomic INCR in Redis, so they hold across server
processes); the monthly budget is summed from the Usage table. The fixed-window counters
(count, uncount) serve the login and sign-up limits too (chat/views/accounts.py).
"""

import contextlib
import logging
import math
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import redis
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils import timezone

from chat import refusals, usage
from chat.models import Usage
from chat.refusals import Refused

logger = logging.getLogger(__name__)

WINDOW_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class Window(NamedTuple):
    """At most `limit` counts in each fixed window of `seconds`, in the counter `name`."""

    name: str
    limit: int
    seconds: int


class WindowFull(Exception):
    """A count went past `window`'s limit; its window ends in `retry_after` seconds."""

    def __init__(self, window: Window, retry_after: int) -> None:
        super().__init__(window.name)
        self.window = window
        self.retry_after = retry_after


def count(windows: Sequence[Window]) -> list[str]:
    """Count one against every window, or against none: raise WindowFull if one is full.

    Counting first and checking after makes the limit exact however many requests arrive
    at once. Returns the keys counted, for uncount().
    """
    now = _now()
    counted: list[str] = []
    for window in windows:
        key = f"{window.name}:{int(now // window.seconds)}"
        counted.append(key)
        if _increment(key, window.seconds) > window.limit:
            uncount(counted)
            raise WindowFull(window, math.ceil(window.seconds - now % window.seconds))
    return counted


def retry_after(window: Window) -> int | None:
    """Return the seconds until the window has room again, or None if it has room now."""
    now = _now()
    if (cache.get(f"{window.name}:{int(now // window.seconds)}") or 0) < window.limit:
        return None
    return math.ceil(window.seconds - now % window.seconds)


def client_address(request: HttpRequest) -> str:
    """Return the address the limits count a request against.

    REMOTE_ADDR, never a header the client could write: behind a proxy, the production
    server (uvicorn) puts the address from X-Forwarded-For there, but only for requests
    from FORWARDED_ALLOW_IPS.
    """
    return str(request.META.get("REMOTE_ADDR", ""))


def _now() -> float:
    """Return the time the windows are cut from: a seam for tests."""
    return time.time()


def uncount(keys: Sequence[str]) -> None:
    """Take back a count()."""
    for key in keys:
        # ValueError: its window has ended since, and there is nothing to take back.
        with contextlib.suppress(ValueError):
            cache.decr(key)


class LimitExceeded(Refused):
    """A user's request goes past one of their limits; retry_after says when it won't."""

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(429, code, message, retry_after)


def admit(user: Any) -> None:
    """Count a new answer against the user's limits, or raise LimitExceeded.

    Takes one of the user's streaming slots: call release() when the answer ends.
    """
    if settings.CHAT_STAFF_EXEMPT and user.is_staff:
        return
    _check_budget(user)
    try:
        _take_slot(user.pk)
        try:
            _count_message(user.pk)
        except LimitExceeded:
            release(user.pk)
            raise
    except redis.RedisError:
        # The counters' store (Redis) is down: no answer can stream without it anyway.
        raise refusals.event_log_unavailable() from None


class Slot:
    """The streaming slot admit() took for one answer: given back once, whoever asks first."""

    def __init__(self, user_id: Any) -> None:
        self.user_id = user_id
        self._held = True
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            release(self.user_id)


def release(user_id: Any) -> None:
    """Give back the streaming slot an answer held (no-op for exempt users)."""
    try:
        if cache.decr(_slot_key(user_id)) < 0:
            cache.set(_slot_key(user_id), 0, _slot_ttl())
    except ValueError:
        pass  # the counter expired, or the user is exempt: nothing is held
    except redis.RedisError:
        # The counter's store is down: the slot frees itself when the counter expires.
        logger.warning("streaming slot of user %s not given back: the cache is down", user_id)


def _take_slot(user_id: Any) -> None:
    key = _slot_key(user_id)
    running = _increment(key, _slot_ttl())
    if running > settings.CHAT_MAX_CONCURRENT:
        # No touch here: a user retrying against a slot that a crashed process never
        # gave back would otherwise keep it from expiring.
        cache.decr(key)
        raise LimitExceeded(
            "too_many_streams",
            f"You already have {settings.CHAT_MAX_CONCURRENT} answers streaming. "
            "Wait for one to finish, or stop it.",
            retry_after=5,
        )
    cache.touch(key, _slot_ttl())


def _count_message(user_id: Any) -> None:
    periods = {
        Window(f"chat:rate:{user_id}:{period}", limit, WINDOW_SECONDS[period]): period
        for period, limit in settings.CHAT_RATE_LIMITS.items()
    }
    try:
        count(list(periods))
    except WindowFull as full:
        raise LimitExceeded(
            "rate_limited",
            f"You can send {full.window.limit} messages per {periods[full.window]}. "
            "Try again later.",
            retry_after=full.retry_after,
        ) from None


def _check_budget(user: Any) -> None:
    budget = settings.CHAT_MONTHLY_TOKEN_BUDGET
    if not budget:
        return
    start = usage.month_start(timezone.now())
    spent = usage.overall(Usage.objects.filter(user=user, created_at__gte=start)).billed_tokens
    if spent >= budget:
        raise LimitExceeded(
            "budget_exhausted",
            f"You have used this month's {budget:,} tokens.",
            retry_after=_seconds_until_next_month(start),
        )


def _seconds_until_next_month(start: datetime) -> int:
    following = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return math.ceil((following - timezone.now()).total_seconds())


def _increment(key: str, ttl: int) -> int:
    """Add one to the counter at key (made at 0, to expire in ttl seconds); return it."""
    cache.add(key, 0, ttl)
    return cache.incr(key)


def _slot_key(user_id: Any) -> str:
    return f"chat:streaming:{user_id}"


def _slot_ttl() -> int:
    # A slot a crashed process never gave back frees itself once no answer can still run.
    return int(settings.CHAT_GENERATION_TIMEOUT) + 60
