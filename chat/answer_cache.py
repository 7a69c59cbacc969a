"""
The response cache: an identical request is answered without calling the model again.

The key is a hash of the canonical request (endpoint, model, parameters, the tools
offered, every message including the system prompt); the value holds the answer's
parts (text and reasoning, in order), finish reason and usage. Only complete answers are
stored. An entry that cannot be read is a miss.
"""

import hashlib
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache

from chat.events import DELTA, REASONING, Part, TokenUsage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedAnswer:
    parts: list[list[str]]  # [kind, text]: "delta" or "reasoning"
    finish_reason: str
    usage: TokenUsage | None

    def answer_parts(self) -> list[Part]:
        return [Part(kind, {"content": text}) for kind, text in self.parts]


def key_for(request: dict[str, Any]) -> str | None:
    """Return the cache key of a request, or None when it must not be cached."""
    if not settings.CHAT_CACHE_TTL:
        return None
    if settings.CHAT_CACHE_MODE == "deterministic" and request.get("temperature") != 0:
        return None
    endpoint = settings.CHAT_MODEL_ENDPOINTS.get(request["model"], {}).get("base_url")
    canonical = json.dumps(
        {"endpoint": endpoint or settings.OPENAI_BASE_URL, "request": request},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return "chat:answer:" + hashlib.sha256(canonical.encode()).hexdigest()


async def lookup(key: str) -> CachedAnswer | None:
    """Return the cached answer for a key, or None for a miss."""
    try:
        raw = await _on_a_worker_thread(cache.get)(key)
    except Exception:  # the backends raise different errors; any of them is a miss
        logger.warning("response cache unreachable; answering from the model", exc_info=True)
        return None
    if raw is None:
        return None
    try:
        answer = CachedAnswer(**raw)
        if not (
            all(_readable_part(part) for part in answer.parts)
            and isinstance(answer.finish_reason, str)
            and (answer.usage is None or all(isinstance(v, int) for v in answer.usage.values()))
        ):
            raise TypeError("wrong types")
    except (TypeError, AttributeError) as exc:
        logger.warning("unreadable response cache entry %s: %s", key, exc)
        return None
    return answer


async def store(key: str, answer: CachedAnswer) -> None:
    """Keep a complete answer for CHAT_CACHE_TTL seconds."""
    try:
        await _on_a_worker_thread(cache.set)(key, asdict(answer), settings.CHAT_CACHE_TTL)
    except Exception:  # a cache that cannot store costs only a future miss
        logger.warning("response cache unreachable; answer not cached", exc_info=True)


def _on_a_worker_thread[**P, R](fn: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    # On any worker thread, as chat/db.py does, not on asgiref's one shared thread (the
    # cache's own aget): behind a busy event loop, a trip there holds up the answer's
    # start. Both cache backends are safe to use from any thread.
    return sync_to_async(fn, thread_sensitive=False)


def _readable_part(part: object) -> bool:
    return (
        isinstance(part, list)
        and len(part) == 2
        and part[0] in (DELTA, REASONING)
        and isinstance(part[1], str)
    )
