"""
A generation's events as a reader gets them: live from the event log while it runs,
rebuilt from the database once it has ended.

The database row holds the answer's text and the size of each delta, so a finished
answer replays as exactly the events that were streamed, with the same ids.
"""

import contextlib
import logging
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from chat import limits
from chat.eventlog import EventLogUnavailable, LogClosed, UnknownGeneration, get_event_log
from chat.models import Generation, Message
from chat.sse import Event

logger = logging.getLogger(__name__)

DELETED = {"code": "not_found", "message": "This conversation was deleted."}
INTERRUPTED = ("interrupted", "The server stopped while writing this answer. Please retry.")


def terminal_event(generation: Generation, message: Message) -> Event:
    """Return the event that ends a finished generation, from its stored outcome."""
    assert generation.last_event_id is not None
    if message.status == Message.Status.ERROR:
        data = {"code": message.error_code, "message": message.error_message}
        return Event(generation.last_event_id, "error", data)
    usage = None
    if message.prompt_tokens is not None and message.completion_tokens is not None:
        usage = {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "total_tokens": message.prompt_tokens + message.completion_tokens,
        }
    data = {
        "finish_reason": message.finish_reason,
        "message": str(message.pk),
        "usage": usage,
        "cached": generation.cached,
    }
    return Event(generation.last_event_id, "done", data)


def stored_events(generation: Generation, after: int) -> list[Event]:
    """Rebuild a finished generation's events after the given id from the database."""
    message = generation.message
    events = []
    offset = 0
    for event_id, size in enumerate(generation.event_sizes, start=1):
        if event_id > after:
            events.append(
                Event(event_id, "delta", {"content": message.content[offset : offset + size]})
            )
        offset += size
    events.append(terminal_event(generation, message))
    return events


async def text_before(generation: Generation, after: int) -> str | None:
    """Return the answer's text up to event `after`, or None if it cannot be known."""
    if after == 0:
        return ""
    if generation.is_finished:
        return generation.message.content[: sum(generation.event_sizes[:after])]
    try:
        logged = await get_event_log().events(str(generation.pk))
    except (UnknownGeneration, EventLogUnavailable):
        return None
    return "".join(e.data["content"] for e in logged if e.kind == "delta" and e.id <= after)


async def events_after(generation: Generation, after: int) -> AsyncIterator[Event]:
    """Yield the generation's events after `after` until its terminal event."""
    position = after
    if not generation.is_finished:
        try:
            async for event in get_event_log().read(str(generation.pk), position):
                position = event.id
                yield event
            return
        except UnknownGeneration:
            # It ended and its log is gone, or its producer died mid-answer.
            settled = await settle(generation.pk)
            if settled is None:
                yield Event(position + 1, "error", DELETED)
                return
            generation = settled
    for event in stored_events(generation, position):
        yield event


async def settle(generation_id: object) -> Generation | None:
    """Return a generation missing from the log, ended as interrupted if it never ended.

    What the dead producer had already sent to the log is kept: the stored text is
    rebuilt from the log's deltas when the log still holds more than the last checkpoint.
    """
    log = get_event_log()
    try:
        logged = await log.events(str(generation_id))
    except (UnknownGeneration, EventLogUnavailable):
        logged = []
    try:
        generation, settled_now = await sync_to_async(_settle)(generation_id, logged)
    except Generation.DoesNotExist:
        return None  # deleted, with its conversation
    if settled_now:
        # Its producer, gone, never gave back the streaming slot it held.
        await sync_to_async(limits.release)(generation.conversation.owner_id)
        event = terminal_event(generation, generation.message)
        with contextlib.suppress(UnknownGeneration, LogClosed, EventLogUnavailable):
            await log.append(str(generation.pk), event.kind, event.data)
        with contextlib.suppress(UnknownGeneration, EventLogUnavailable):
            await log.close(str(generation.pk))
    return generation


def _settle(generation_id: object, logged: list[Event]) -> tuple[Generation, bool]:
    with transaction.atomic():
        generation = (
            Generation.objects.select_for_update(of=("self", "message"))
            .select_related("message", "conversation")
            .get(pk=generation_id)
        )
        if generation.is_finished:
            return generation, False
        logger.warning("generation %s lost its producer; marking it interrupted", generation.pk)
        deltas = [event.data["content"] for event in logged if event.kind == "delta"]
        if len(deltas) > len(generation.event_sizes):
            generation.message.content = "".join(deltas)
            generation.event_sizes = [len(delta) for delta in deltas]
        mark_failed(generation, *INTERRUPTED)
        return generation, True


def mark_failed(generation: Generation, code: str, text: str) -> None:
    """End a generation as failed with the text stored so far (call in a transaction)."""
    message = generation.message
    message.status = Message.Status.ERROR
    message.error_code = code
    message.error_message = text
    message.save(update_fields=["content", "status", "error_code", "error_message", "updated_at"])
    generation.last_event_id = len(generation.event_sizes) + 1
    generation.finished_at = timezone.now()
    generation.save(update_fields=["event_sizes", "last_event_id", "finished_at"])
