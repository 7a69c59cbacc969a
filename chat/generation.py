"""
Runs one answer: reads the model through the provider, appends each delta to the event
log, checkpoints the text to the database now and then, and writes the outcome.

It knows nothing of HTTP: it starts when a message is posted and goes on whether or not
anyone is reading. A cancel, from any process, arrives through the event log.
"""

import asyncio
import contextlib
import contextvars
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections, transaction
from django.utils import timezone

from chat import answer_cache, limits, provider, titles, usage
from chat.answer_cache import CachedAnswer
from chat.eventlog import EventLogUnavailable, LogClosed, UnknownGeneration, get_event_log
from chat.middleware import request_id_var
from chat.models import Conversation, Generation, Message
from chat.provider import Finish, ProviderError
from chat.replay import INTERRUPTED, settle, terminal_event

logger = logging.getLogger(__name__)

# Strong references: the event loop keeps only weak ones to its tasks.
_running: set[asyncio.Task[None]] = set()
# Resolved to end an answer as interrupted: the process is shutting down.
_interrupts: dict[str, asyncio.Future[None]] = {}

LOG_FAILURES = (EventLogUnavailable, LogClosed, UnknownGeneration)


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    message: str


@dataclass
class Answer:
    parts: list[str] = field(default_factory=list)
    finish_reason: str = ""
    usage: dict[str, int] | None = None
    failure: Failure | None = None
    cached: bool = False
    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None

    def add(self, text: str) -> None:
        if self.first_token is None:
            self.first_token = time.monotonic()
        self.parts.append(text)

    @property
    def outcome(self) -> str:
        return self.failure.code if self.failure else self.finish_reason

    def log_fields(self) -> dict[str, Any]:
        """What a log line of the answer's end carries: never its text."""
        ttft = None if self.first_token is None else self.first_token - self.started
        return {
            "outcome": self.outcome,
            "ttft_ms": None if ttft is None else round(ttft * 1000, 1),
            "duration_ms": round((time.monotonic() - self.started) * 1000, 1),
            "deltas": len(self.parts),
            "prompt_tokens": self.usage["prompt_tokens"] if self.usage else None,
            "completion_tokens": self.usage["completion_tokens"] if self.usage else None,
            "cached": self.cached,
        }

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def sizes(self) -> list[int]:
        return [len(part) for part in self.parts]


async def start(generation: Generation) -> None:
    """Open the generation's log and run it in the background; return at once.

    Raises EventLogUnavailable, having ended the answer, when the log cannot be opened.
    """
    try:
        await get_event_log().open(str(generation.pk))
    except EventLogUnavailable:
        await settle(generation.pk)  # which gives back its streaming slot
        raise
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


async def shutdown(grace: float) -> None:
    """Let running answers finish for up to `grace` seconds, then end the rest.

    Those are stored as interrupted, with their text so far, and their readers, here or
    in another process, get the `interrupted` error. For the server's shutdown.
    """
    if _running:
        await asyncio.wait(set(_running), timeout=grace)
    if _interrupts:
        logger.warning("shutting down: interrupting %d running answers", len(_interrupts))
    for interrupt in _interrupts.values():
        if not interrupt.done():
            interrupt.set_result(None)
    await wait_all()


async def _run_detached(generation_id: Any) -> None:
    # No ThreadSensitiveContext of its own: that is an OS thread per running answer.
    # Its self-contained database calls run on any worker thread, the rest on asgiref's
    # process-wide thread, whose connection is given back at the end.
    try:
        await run(generation_id)
    except Exception:
        # run() ends every answer itself; this is for what it could not survive
        # (the database gone at the start, say): end it rather than leave it hanging.
        logger.exception("generation %s failed before it could end", generation_id)
        await settle(generation_id)
    finally:
        await sync_to_async(connections.close_all)()


async def run(generation_id: Any) -> None:
    """Produce one answer from start to end, whatever happens upstream."""
    generation = await sync_to_async(_load, thread_sensitive=False)(generation_id)
    request_id_var.set(generation.request_id or "-")
    answer = Answer()
    key = None if generation.regenerated else answer_cache.key_for(generation.request)
    cached = await answer_cache.lookup(key) if key else None
    try:
        if cached:
            await _replay_cached(generation, cached, answer)
        else:
            await _produce(generation, answer)
        await _finish(generation, answer)
    finally:
        await sync_to_async(limits.release)(generation.conversation.owner_id)
    if answer.failure is None and answer.finish_reason == "stop":
        if key and not cached:
            await answer_cache.store(
                key, CachedAnswer(answer.parts, answer.finish_reason, answer.usage)
            )
        await titles.title_after_first_answer(generation.conversation_id)


async def _produce(generation: Generation, answer: Answer) -> None:
    """Relay the model's answer until it ends, is cancelled or runs out of time."""
    key = str(generation.pk)
    relay = asyncio.create_task(_relay(generation, answer))
    stop = asyncio.create_task(_stop_requested(key))
    interrupt = _interrupts[key] = asyncio.get_running_loop().create_future()
    try:
        done, _ = await asyncio.wait(
            {relay, stop, interrupt},
            timeout=settings.CHAT_GENERATION_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        del _interrupts[key]
        stop.cancel()
        if not relay.done():
            # Cancelling the relay exits its `async with` on the SDK stream, which
            # closes the upstream HTTP request: no more tokens are paid for.
            relay.cancel()
            await asyncio.wait({relay})
    if relay in done:
        answer.failure = _failure_of(relay)
    elif stop in done:
        logger.info("generation %s stopped: %s", generation.pk, stop.result())
        answer.finish_reason = "cancelled"
    elif interrupt in done:
        answer.failure = Failure(*INTERRUPTED)
    else:
        answer.failure = Failure("timeout", "The answer took too long and was stopped.")


async def _replay_cached(generation: Generation, cached: CachedAnswer, answer: Answer) -> None:
    """Send a cached answer through the same events as a fresh one, at once."""
    log = get_event_log()
    answer.cached = True
    answer.finish_reason = cached.finish_reason
    answer.usage = cached.usage
    try:
        for part in cached.parts:
            answer.add(part)
            await log.append(str(generation.pk), "delta", {"content": part})
    except LOG_FAILURES as exc:
        logger.warning("event log failed while replaying a cached answer: %r", exc)
        answer.failure = Failure(
            "event_log", "The live stream broke off; the answer so far was kept."
        )


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
        # The memory log's append never suspends: without this, a fast model's burst is
        # relayed whole before its readers, or any other request, get the loop.
        await asyncio.sleep(0)
        if loop.time() >= next_checkpoint:
            await _checkpoint(generation, answer)
            next_checkpoint = loop.time() + settings.CHAT_CHECKPOINT_INTERVAL


async def _stop_requested(key: str) -> str:
    """Return why the generation must stop: a cancel, or no reader for too long.

    Meanwhile, tell the event log every liveness interval that this process still runs.
    """
    log = get_event_log()
    cancelled = asyncio.create_task(log.wait_cancelled(key))
    try:
        while True:
            done, _ = await asyncio.wait({cancelled}, timeout=settings.CHAT_LIVENESS_INTERVAL)
            if done and cancelled.exception() is None:
                return "cancelled"
            if done:
                # The log's store failed for a moment: listen again.
                logger.warning("waiting for a cancel of %s failed", key)
                cancelled = asyncio.create_task(log.wait_cancelled(key))
            try:
                await log.keep_alive(key)
                if await _abandoned(key):
                    return "abandoned: no one read it for CHAT_ABANDON_AFTER seconds"
            except LOG_FAILURES as exc:
                logger.warning("liveness of %s not recorded: %r", key, exc)
    finally:
        cancelled.cancel()


async def _abandoned(key: str) -> bool:
    if not settings.CHAT_ABANDON_AFTER:
        return False
    last_read = await get_event_log().last_read(key)
    return last_read is not None and time.time() - last_read > settings.CHAT_ABANDON_AFTER


def _failure_of(relay: asyncio.Task[None]) -> Failure | None:
    exc = relay.exception()
    if exc is None:
        return None
    if isinstance(exc, ProviderError):
        return Failure(exc.code, exc.message)
    if isinstance(exc, LOG_FAILURES):
        logger.warning("event log failed while streaming: %r", exc)
        return Failure("event_log", "The live stream broke off; the answer so far was kept.")
    # Anything else is our bug; the answer must still end, with its text kept.
    logger.error("generation failed", exc_info=exc)
    return Failure("internal", "Something went wrong on our side.")


def _load(generation_id: Any) -> Generation:
    try:
        return Generation.objects.select_related("message", "conversation").get(pk=generation_id)
    finally:
        close_old_connections()  # not held while the model answers


async def _checkpoint(generation: Generation, answer: Answer) -> None:
    try:
        await sync_to_async(_save_checkpoint, thread_sensitive=False)(
            generation, answer.text, answer.sizes
        )
    except DatabaseError:
        # The answer goes on; the final write tries again.
        logger.warning("checkpoint of generation %s failed", generation.pk)


def _save_checkpoint(generation: Generation, text: str, sizes: list[int]) -> None:
    try:
        with transaction.atomic():
            # Both only while the answer runs: a reader may have ended it as interrupted
            # (its producer looked dead), and its stored text must then stay as ended.
            running = Generation.objects.select_for_update().filter(
                pk=generation.pk, last_event_id=None
            )
            if running.update(event_sizes=sizes):
                Message.objects.filter(pk=generation.message.pk).update(content=text)
    finally:
        close_old_connections()


async def _finish(generation: Generation, answer: Answer) -> None:
    """Store the outcome, then tell the readers: `done` implies the text is saved."""
    key = str(generation.pk)
    try:
        stored = await sync_to_async(_save_outcome)(generation, answer)
    except DatabaseError:
        logger.exception("could not save generation %s", generation.pk)
        stored = False
    if not stored:
        # Already ended by a reader that found this process silent (its terminal event
        # is in), or the database failed: readers then settle it from the database.
        with contextlib.suppress(*LOG_FAILURES):
            await get_event_log().close(key)
        return
    event = terminal_event(generation, generation.message)
    try:
        await get_event_log().append(key, event.kind, event.data)
        await get_event_log().close(key)
    except LOG_FAILURES as exc:
        logger.warning("could not end the event log of %s: %r", generation.pk, exc)
    logger.info(
        "generation %s ended: %s after %d events",
        generation.pk,
        answer.outcome,
        event.id,
        extra={
            "generation": str(generation.pk),
            "user": generation.conversation.owner_id,
            "model": generation.model,
            **answer.log_fields(),
        },
    )


def _save_outcome(generation: Generation, answer: Answer) -> bool:
    """Write the answer's outcome unless the generation has ended already."""
    message = generation.message
    message.content = answer.text
    if answer.failure:
        message.status = Message.Status.ERROR
        message.error_code = answer.failure.code
        message.error_message = answer.failure.message
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
    generation.cached = answer.cached
    with transaction.atomic():
        claimed = Generation.objects.filter(pk=generation.pk, last_event_id=None).update(
            event_sizes=generation.event_sizes,
            last_event_id=generation.last_event_id,
            finished_at=generation.finished_at,
            cached=generation.cached,
        )
        if not claimed:
            return False
        message.save()
        usage.record(
            user_id=generation.conversation.owner_id,
            request=generation.request,
            text=answer.text,
            usage=answer.usage,
            cached=answer.cached,
            generation=generation,
        )
        Conversation.objects.filter(pk=generation.conversation_id).update(
            updated_at=generation.finished_at
        )
    return True
