"""
Readiness checks for a load balancer: can this process reach what it needs to serve?

Each check either returns or raises; `readiness()` runs them at once, each under a short
timeout, and reports "ok" or "unavailable" per check. The reason a check failed goes to
the log only: an exception's text can hold a host name, a port or a password.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from django.conf import settings
from django.db import connection

from chat import db

logger = logging.getLogger(__name__)

# Seconds a check may take: a load balancer's probe should get its answer well before
# its own timeout, and a reachable database or Redis answers in milliseconds.
TIMEOUT = 2.0


async def database() -> None:
    """Run a trivial query on a connection of its own, and close it."""
    await db.run(_select_one)


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def redis_server() -> None:
    """Ping REDIS_URL (the cache's and the event log's server) on a new connection."""
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


def checks() -> dict[str, Callable[[], Awaitable[None]]]:
    """The checks this process's settings call for, by the name they are reported under."""
    needed: dict[str, Callable[[], Awaitable[None]]] = {"database": database}
    if settings.REDIS_URL:
        needed["redis"] = redis_server
    return needed


async def outcome(name: str, check: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(check(), TIMEOUT)
    except Exception:
        logger.warning("readiness check %r failed", name, exc_info=True)
        return "unavailable"
    return "ok"


async def readiness() -> dict[str, str]:
    """Run every check at once: {"database": "ok", "redis": "unavailable"}."""
    named = checks()
    results = await asyncio.gather(*(outcome(name, check) for name, check in named.items()))
    return dict(zip(named, results, strict=True))
