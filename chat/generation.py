"""
A conversation's answer, produced in the background: the pipeline's parts appended to
the answer's event log, the text checkpointed to the database now and then, and the end
handed to chat/ending.py.

It knows nothing of HTTP: it starts when a message is posted and goes on whether or not
anyone is reading. It stops early for a cancel (from any process, through the event
log), for an answer nobody reads (CHAT_ABANDON_AFTER), or for the server's shutdown.
"""

import asyncio
import contextlib
import contextvars
import copy
import dataclasses
import logging
import time

from django.conf import settings
from django.db import DatabaseError, transaction

from chat import answering, attachment_prompt, db, ending, failures, logs, titles, tools
from chat.answer import Answer, stored_parts
from chat.answering import Prepared
from chat.ending import LOG_FAILURES
from chat.eventlog import EventLogUnavailable, LogClosed, UnknownGeneration, get_event_log
from chat.events import Part
from chat.models import Generation, Message

logger = logging.getLogger(__name__)

# Strong references: the event loop keeps only weak ones to its tasks.
_running: set[asyncio.Task[None]] = set()
# The generations this process runs, by id, as their tasks hold them: their readers
# need no query.
_started: dict[str, Generation] = {}
# Resolved to end an answer as interrupted: the process is shutting down.
_interrupts: dict[str, asyncio.Future[None]] = {}


async def start(generation: Generation) -> None:
    """Open the generation's log and run it in the background; return at once.

    A generation that continues an answer starts from that answer's stored events: they
    are its log's first, so its stream is the whole answer.

    Raises EventLogUnavailable, having ended the answer, when the log cannot be opened.
    """
    key = str(generation.pk)
    try:
        await get_event_log().open(key)
        if generation.event_layout:
            await get_event_log().append(key, _continued(generation))
    except EventLogUnavailable:
        await ending.fail(generation, failures.EVENT_LOG_UNAVAILABLE)
        raise
    # A fresh context: the task outlives the request, and must not share its
    # thread-sensitive executor or its database connection.
    # The task needs no query for the generation: the write that made it loaded what
    # the answer needs.
    running = _own(generation)
    task = asyncio.create_task(_run_detached(running), context=contextvars.Context())
    _running.add(task)
    _started[key] = running
    task.add_done_callback(_running.discard)
    task.add_done_callback(lambda _: _started.pop(key, None))  # a task that never relayed


def started_here(pk: object) -> Generation | None:
    """The generation as this process's task for it holds it, while the task relays its
    answer; None for any other, and once the relay has stopped (the database then tells
    how the answer ended).

    A reader that took it may find it finished later: chat/ending.py marks it finished
    last.
    """
    return _started.get(str(pk))


def _own(generation: Generation) -> Generation:
    """The task's copy: it writes the answer's end into the generation and its message,
    while the caller goes on reading them as they started. What it only reads (the
    conversation, the request) is shared."""
    mine = copy.copy(generation)
    mine.message = copy.copy(generation.message)
    return mine


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


async def _run_detached(generation: Generation) -> None:
    # No ThreadSensitiveContext of its own: that is an OS thread per running answer.
    # Its self-contained database work runs on any worker thread (chat/db.py), the rest
    # on asgiref's process-wide thread, whose connection is given back at the end.
    async with db.given_back():
        try:
            await run(generation)
        except Exception:
            # run() ends every answer itself; this is for what it could not survive
            # (the database gone at the start, say): end it rather than leave it hanging.
            logger.exception("generation %s failed before it could end", generation.pk)
            await ending.settle(generation.pk)


async def run(generation: Generation) -> None:
    """Produce one answer from start to end, whatever happens upstream.

    `generation` comes with its message and its conversation's owner.
    """
    logs.request_id.set(generation.request_id or "-")
    # Regenerate always asks the model.
    prepared = Prepared.of(
        generation.request,
        use_cache=not generation.regenerated,
        tools=tools.offered_to(generation.model),
        user=generation.conversation.owner,
    )
    if attachment_prompt.references(prepared.request):
        # Attached images go upstream as data URLs; the stored request only refers to them.
        owner = generation.conversation.owner
        request = await db.run(attachment_prompt.expanded, prepared.request, owner)
        prepared = dataclasses.replace(prepared, request=request)
    answer = Answer.of(_continued(generation))
    try:
        await _produce(generation, prepared, answer)
    except LogClosed:
        # A reader or the sweeper took the producer for dead and is ending the answer
        # with what the log holds: the end is theirs.
        logger.warning("generation %s was ended by another while it ran", generation.pk)
        return
    finally:
        # Relayed: from its end on, its readers ask the database how it ended.
        _started.pop(str(generation.pk), None)
    if await ending.end(generation, answer) and answer.complete:
        await answering.remember(prepared, answer)
        await titles.title_after_first_answer(generation)


async def _produce(generation: Generation, prepared: Prepared, answer: Answer) -> None:
    """Relay the answer until it ends, is stopped, or the process shuts down."""
    key = str(generation.pk)
    # Held by the relay from a part's append until the answer counts it: the relay is
    # stopped only outside, or the log would hold a part the stored answer lacks.
    appending = asyncio.Lock()
    relay = asyncio.create_task(_relay(generation, prepared, answer, appending))
    stop = asyncio.create_task(_stop_requested(key))
    interrupt = _interrupts[key] = asyncio.get_running_loop().create_future()
    try:
        done, _ = await asyncio.wait({relay, stop, interrupt}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        del _interrupts[key]
        stop.cancel()
        if not relay.done():
            # Cancelling the relay closes the pipeline, which closes the upstream
            # request: no more tokens are paid for.
            async with appending:
                relay.cancel()
            await asyncio.wait({relay})
    if relay in done:
        relay.result()  # LogClosed: the answer is being ended by another
    elif stop in done:
        logger.info("generation %s stopped: %s", generation.pk, stop.result())
        answer.finish_reason = "cancelled"
    elif interrupt in done:
        answer.failure = failures.INTERRUPTED


async def _relay(
    generation: Generation, prepared: Prepared, answer: Answer, appending: asyncio.Lock
) -> None:
    """Append the pipeline's parts to the event log; failures end up in the answer.

    The answer's text is stored every CHAT_CHECKPOINT_INTERVAL beside the relay, not in
    its way: a checkpoint waits its turn to write (SQLite's one writer, a busy
    database) while the tokens go on; one at a time, the last one awaited at the end.
    """
    log = get_event_log()
    key = str(generation.pk)
    loop = asyncio.get_running_loop()
    next_checkpoint = loop.time() + settings.CHAT_CHECKPOINT_INTERVAL
    checkpointing: asyncio.Task[None] | None = None
    try:
        async with contextlib.aclosing(answering.answer_parts(prepared, answer)) as parts:
            async for part in parts:
                async with appending:
                    await log.append(key, [part])
                    answer.add(part)
                idle = checkpointing is None or checkpointing.done()
                if idle and loop.time() >= next_checkpoint:
                    checkpointing = asyncio.create_task(_checkpoint(generation, answer.snapshot()))
                    next_checkpoint = loop.time() + settings.CHAT_CHECKPOINT_INTERVAL
    except (EventLogUnavailable, UnknownGeneration) as exc:
        logger.warning("event log failed while streaming: %r", exc)
        answer.failure = failures.EVENT_LOG
    except LogClosed:
        raise
    except Exception:
        logger.exception("generation %s failed", generation.pk)
        answer.failure = failures.INTERNAL
    finally:
        if checkpointing is not None:
            try:
                await asyncio.wait({checkpointing})
            except asyncio.CancelledError:  # stopped while it waited: it ends first all the same
                await asyncio.wait({checkpointing})
                raise


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


def _continued(generation: Generation) -> list[Part]:
    """Return the parts the answer held before this generation began: none, or those
    of the answer it continues."""
    message = generation.message
    return stored_parts(
        generation.event_layout, message.content, message.reasoning, message.tool_calls
    )


async def _checkpoint(generation: Generation, answer: Answer) -> None:
    try:
        await db.write(save_checkpoint, generation, answer)
    except DatabaseError:
        # The answer goes on; its end tries again.
        logger.warning("checkpoint of generation %s failed", generation.pk)
    except Exception:
        logger.exception("checkpoint of generation %s failed", generation.pk)


def save_checkpoint(generation: Generation, answer: Answer) -> None:
    """Store the answer so far, only while the answer runs.

    A reader may have ended it as interrupted (its producer looked dead): its stored
    text must then stay as it ended.
    """
    with transaction.atomic():
        running = Generation.objects.running().filter(pk=generation.pk)
        if running.update(event_layout=answer.layout):
            Message.objects.filter(pk=generation.message.pk).update(
                content=answer.text, reasoning=answer.reasoning_text, tool_calls=answer.tool_calls
            )
