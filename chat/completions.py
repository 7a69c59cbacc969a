"""
Stateless completions: answer a request the client wholly supplies, stored nowhere.

The pipeline's parts go straight into the response to the POST, numbered as a
conversation's stream numbers them, then `done` or `error`: a task relays them into a
private in-memory channel, which the response reads as a conversation's stream reads its
log (in batches, with heartbeats). The answer is cached,
rate-limited and accounted like any other. Nothing survives the connection: a client
that goes away stops the upstream request, and there is nothing to resume.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

from django.db import DatabaseError

from chat import answering, db, limits, usage
from chat.answer import Answer
from chat.answering import Prepared
from chat.eventlog.memory import Channel
from chat.events import Event
from chat.models import ApiKey

logger = logging.getLogger(__name__)

# Accounting must run to its end even if the client leaves while it runs.
_accounting: set[asyncio.Task[None]] = set()


async def batches(
    slot: limits.Slot, prepared: Prepared, idle: float, api_key: ApiKey | None = None
) -> AsyncGenerator[list[Event]]:
    """Yield the answer's events in batches, [] after `idle` s of nothing.

    The streaming slot admit() took is given back at the end. Whatever the ending,
    finished, failed or abandoned by the client (which stops the upstream request at
    once), the answer is accounted for exactly once.
    """
    channel = Channel()
    producing = asyncio.create_task(_produce(slot, prepared, channel, api_key))
    try:
        async for batch in channel.read(0, idle):
            yield batch
    finally:
        producing.cancel()
        await asyncio.wait({producing})


async def _produce(
    slot: limits.Slot, prepared: Prepared, channel: Channel, api_key: ApiKey | None
) -> None:
    answer = Answer()
    try:
        # aclosing: a client that leaves must close the upstream request now, not at GC.
        async with contextlib.aclosing(answering.answer_parts(prepared, answer)) as parts:
            async for part in parts:
                channel.append([part])
                answer.add(part)
    finally:
        if not answer.finish_reason and answer.failure is None:
            answer.finish_reason = "cancelled"  # the client left
        await _account(slot, prepared, answer, api_key)
    channel.append([answer.ending.part(None)])


async def wait_all() -> None:
    """Wait for the accounting of the answers that have ended (shutdown)."""
    while _accounting:
        await asyncio.wait(set(_accounting))


async def _account(
    slot: limits.Slot, prepared: Prepared, answer: Answer, api_key: ApiKey | None
) -> None:
    """Release the slot, record the usage and cache a complete answer, shielded."""
    task = asyncio.create_task(_settle(slot, prepared, answer, api_key))
    _accounting.add(task)
    task.add_done_callback(_accounting.discard)
    await asyncio.shield(task)


async def _settle(
    slot: limits.Slot, prepared: Prepared, answer: Answer, api_key: ApiKey | None
) -> None:
    logger.info(
        "stateless completion ended: %s",
        answer.outcome,
        extra={"user": slot.user_id, "model": prepared.model, **answer.log_fields()},
    )
    try:
        await db.write(_record, slot.user_id, prepared.request, answer, api_key)
    except DatabaseError:
        # The client has its answer; losing its usage row must not break the stream.
        logger.exception("usage of a stateless completion not recorded")
    finally:
        await db.run(slot.release)
    await answering.remember(prepared, answer)


def _record(user_id: Any, request: dict[str, Any], answer: Answer, api_key: ApiKey | None) -> None:
    usage.record(
        user_id=user_id,
        request=request,
        text=answer.text,
        usage=answer.usage,
        estimated=answer.usage_estimated,
        api_key_id=api_key.pk if api_key else None,
        cached=answer.cached,
    )
