"""
Runs one answer: reads the model through the provider, appends each delta to the event
log, checkpoints the text to the database now and then, and writes the outcome.

It knows nothing of HTTP: it starts when a message is posted and goes on whether or not
anyone is reading. A cancel, from any reader, arrives through the event log.
"""

import asyncio
import contextlib
import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections, transaction
from django.utils import timezone

from chat import provider
from chat.eventlog import UnknownGeneration, get_event_log
from chat.middleware import request_id_var
from chat.models import Conversation, Generation, Message
from chat.provider import Finish, ProviderError
from chat.replay import terminal_event

logger = logging.getLogger(__name__)

# Strong references: the event loop keeps only weak ones to its tasks.
_running: set[asyncio.Task[None]] = set()


@dataclass
class Answer:
    parts: list[str] = field(default_factory=list)
    finish_reason: str = ""
    usage: dict[str, int] | None = None
    error: ProviderError | None = None

    def add(self, text: str) -> None:
        self.parts.append(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def sizes(self) -> list[int]:
        return [len(part) for part in self.parts]


async def start(generation: Generation) -> None:
    """Open the generation's log and run it in the background; return at once."""
    await get_event_log().open(str(generation.pk))
    # A fresh context: the task outlives the request, and must not share its
    # thread-sensitive executor or its database connection.
    task = asyncio.create_task(_run_detached(generation.pk), context=contextvars.Context())
    _running.add(task)
    task.add_done_callback(_running.discard)


async def cancel(generation: Generation) -> None:
    """Ask a running generation to stop; it ends with finish_reason "cancelled"."""
    if generation.is_finished:
        return
    with contextlib.suppress(UnknownGeneration):  # it has just ended, or its process is gone
        await get_event_log().cancel(str(generation.pk))


async def wait_all() -> None:
    """Wait for every generation this process is running (tests and shutdown)."""
    while _running:
        await asyncio.wait(set(_running))


async def _run_detached(generation_id: Any) -> None:
    async with ThreadSensitiveContext():
        try:
            await run(generation_id)
        finally:
            await sync_to_async(connections.close_all)()


async def run(generation_id: Any) -> None:
    """Produce one answer from start to end, whatever happens upstream."""
    generation = await sync_to_async(_load)(generation_id)
    request_id_var.set(generation.request_id or "-")
    log = get_event_log()
    answer = Answer()
    relay = asyncio.create_task(_relay(generation, answer))
    cancelled = asyncio.create_task(log.wait_cancelled(str(generation.pk)))
    try:
        done, _ = await asyncio.wait(
            {relay, cancelled},
            timeout=settings.CHAT_GENERATION_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        cancelled.cancel()
        if not relay.done():
            # Cancelling the relay exits its `async with` on the SDK stream, which
            # closes the upstream HTTP request: no more tokens are paid for.
            relay.cancel()
            await asyncio.wait({relay})
    if relay in done:
        _record_failure(relay, answer)
    elif cancelled in done:
        answer.finish_reason = "cancelled"
    else:
        answer.error = ProviderError("timeout", "The answer took too long and was stopped.")
    await _finish(generation, answer)


async def _relay(generation: Generation, answer: Answer) -> None:
    log = get_event_log()
    key = str(generation.pk)
    loop = asyncio.get_running_loop()
    next_checkpoint = loop.time() + settings.CHAT_CHECKPOINT_INTERVAL
    async for item in provider.stream_chat(generation.request):
        if isinstance(item, Finish):
            answer.finish_reason = item.reason
            answer.usage = item.usage
            continue
        answer.add(item)
        await log.append(key, "delta", {"content": item})
        if loop.time() >= next_checkpoint:
            try:
                await sync_to_async(_checkpoint)(generation, answer.text, answer.sizes)
            except DatabaseError:
                # The answer goes on; the final write tries again.
                logger.warning("checkpoint of generation %s failed", generation.pk)
            next_checkpoint = loop.time() + settings.CHAT_CHECKPOINT_INTERVAL


def _record_failure(relay: asyncio.Task[None], answer: Answer) -> None:
    exc = relay.exception()
    if isinstance(exc, ProviderError):
        answer.error = exc
    elif exc is not None:
        # Anything else is our bug; the answer must still end, with its text kept.
        logger.error("generation failed", exc_info=exc)
        answer.error = ProviderError("internal", "Something went wrong on our side.")


def _load(generation_id: Any) -> Generation:
    try:
        return Generation.objects.select_related("message").get(pk=generation_id)
    finally:
        close_old_connections()  # not held while the model answers


def _checkpoint(generation: Generation, text: str, sizes: list[int]) -> None:
    try:
        with transaction.atomic():
            Message.objects.filter(pk=generation.message.pk).update(content=text)
            Generation.objects.filter(pk=generation.pk).update(event_sizes=sizes)
    finally:
        close_old_connections()


async def _finish(generation: Generation, answer: Answer) -> None:
    """Store the outcome, then tell the readers: `done` implies the text is saved."""
    log = get_event_log()
    key = str(generation.pk)
    try:
        await sync_to_async(_save_outcome)(generation, answer)
    except DatabaseError:
        logger.exception("could not save generation %s", generation.pk)
        data = {"code": "storage", "message": "The answer could not be saved. Please retry."}
        await log.append(key, "error", data)
        await log.close(key)
        return
    event = terminal_event(generation, generation.message)
    await log.append(key, event.kind, event.data)
    await log.close(key)
    logger.info(
        "generation %s ended: %s after %d events",
        generation.pk,
        answer.error.code if answer.error else answer.finish_reason,
        event.id,
    )


def _save_outcome(generation: Generation, answer: Answer) -> None:
    message = generation.message
    message.content = answer.text
    if answer.error:
        message.status = Message.Status.ERROR
        message.error_code = answer.error.code
        message.error_message = answer.error.message
    else:
        message.status = (
            Message.Status.CANCELLED
            if answer.finish_reason == "cancelled"
            else Message.Status.COMPLETE
        )
        message.finish_reason = answer.finish_reason
    if answer.usage:
        message.prompt_tokens = answer.usage["prompt_tokens"]
        message.completion_tokens = answer.usage["completion_tokens"]
    generation.event_sizes = answer.sizes
    generation.last_event_id = len(answer.parts) + 1
    generation.finished_at = timezone.now()
    with transaction.atomic():
        message.save()
        generation.save(update_fields=["event_sizes", "last_event_id", "finished_at"])
        Conversation.objects.filter(pk=generation.conversation_id).update(
            updated_at=generation.finished_at
        )
