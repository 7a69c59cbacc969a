"""
Stateless completions: answer a request the client wholly supplies, stored nowhere.

The answer streams in the response to the POST itself, with the same events as a
conversation's stream (numbered deltas, then `done` or `error`), and is cached,
rate-limited and accounted like any other. Nothing survives the connection: a client
that goes away stops the upstream request, and there is nothing to resume.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from chat import answer_cache, limits, provider, usage
from chat.answer_cache import CachedAnswer
from chat.generation import Answer, Failure
from chat.provider import Finish, ProviderError
from chat.sse import Event

logger = logging.getLogger(__name__)

TIMEOUT = Failure("timeout", "The answer took too long and was stopped.")
INTERNAL = Failure("internal", "Something went wrong on our side.")

# Accounting must run to its end even if the client leaves while it runs.
_accounting: set[asyncio.Task[None]] = set()


async def events(
    slot: limits.Slot, request: dict[str, Any], *, use_cache: bool
) -> AsyncIterator[Event]:
    """Yield the answer's events; the streaming slot admit() took is given back at the end.

    Whatever the ending, finished, failed or abandoned by the client, the answer is
    accounted for exactly once.
    """
    answer = Answer()
    key = answer_cache.key_for(request) if use_cache else None
    accounted = False
    try:
        cached = await answer_cache.lookup(key) if key else None
        event_id = 0
        # aclosing: a client that leaves must close the upstream request now, not at GC.
        async with contextlib.aclosing(_texts(request, cached, answer)) as texts:
            async for text in texts:
                event_id += 1
                yield Event(event_id, "delta", {"content": text})
        accounted = True
        await _account(slot, request, answer, None if cached else key)
        yield Event(event_id + 1, *_terminal(answer))
    finally:
        if not accounted:
            answer.finish_reason = answer.finish_reason or "cancelled"
            await _account(slot, request, answer, None)


async def _texts(
    request: dict[str, Any], cached: CachedAnswer | None, answer: Answer
) -> AsyncIterator[str]:
    """Yield the answer's deltas, from the cache or the model; failures end up in answer."""
    if cached:
        answer.cached = True
        answer.finish_reason = cached.finish_reason
        answer.usage = cached.usage
        for part in cached.parts:
            answer.add(part)
            yield part
        return
    deadline = asyncio.get_running_loop().time() + settings.CHAT_GENERATION_TIMEOUT
    upstream = provider.stream_chat(request)
    try:
        while True:
            # The deadline bounds each step, not the generator: its steps may run in
            # different tasks (the heartbeat reads it through a task of its own).
            async with asyncio.timeout_at(deadline):
                item = await anext(upstream)
            if isinstance(item, Finish):
                answer.finish_reason = item.reason
                answer.usage = item.usage
                continue
            answer.add(item)
            yield item
    except StopAsyncIteration:
        pass
    except ProviderError as exc:
        answer.failure = Failure(exc.code, exc.message)
    except TimeoutError:
        answer.failure = TIMEOUT
    except Exception:
        logger.exception("stateless completion failed")
        answer.failure = INTERNAL
    finally:
        await upstream.aclose()  # closes the upstream request on every path


def _terminal(answer: Answer) -> tuple[str, dict[str, Any]]:
    if answer.failure:
        return "error", {"code": answer.failure.code, "message": answer.failure.message}
    tokens = None
    if answer.usage:
        tokens = {
            "prompt_tokens": answer.usage["prompt_tokens"],
            "completion_tokens": answer.usage["completion_tokens"],
            "total_tokens": answer.usage["prompt_tokens"] + answer.usage["completion_tokens"],
        }
    data = {
        "finish_reason": answer.finish_reason,
        "message": None,
        "usage": tokens,
        "cached": answer.cached,
    }
    return "done", data


async def wait_all() -> None:
    """Wait for the accounting of the answers that have ended (shutdown)."""
    while _accounting:
        await asyncio.wait(set(_accounting))


async def _account(
    slot: limits.Slot, request: dict[str, Any], answer: Answer, cache_key: str | None
) -> None:
    """Release the slot, record the usage and cache a complete answer, shielded."""
    task = asyncio.create_task(_settle(slot, request, answer, cache_key))
    _accounting.add(task)
    task.add_done_callback(_accounting.discard)
    await asyncio.shield(task)


async def _settle(
    slot: limits.Slot, request: dict[str, Any], answer: Answer, cache_key: str | None
) -> None:
    logger.info(
        "stateless completion ended: %s",
        answer.outcome,
        extra={"user": slot.user_id, "model": request["model"], **answer.log_fields()},
    )
    try:
        await sync_to_async(_record)(slot.user_id, request, answer)
    finally:
        await sync_to_async(slot.release)()
    if cache_key and answer.failure is None and answer.finish_reason == "stop":
        await answer_cache.store(
            cache_key, CachedAnswer(answer.parts, answer.finish_reason, answer.usage)
        )


def _record(user_id: Any, request: dict[str, Any], answer: Answer) -> None:
    try:
        usage.record(
            user_id=user_id,
            request=request,
            text=answer.text,
            usage=answer.usage,
            cached=answer.cached,
        )
    except DatabaseError:
        # The client has its answer; losing its usage row must not break the stream.
        logger.exception("usage of a stateless completion not recorded")
    finally:
        close_old_connections()  # not held by a stream that may run for minutes
