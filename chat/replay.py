"""
A generation's events as a reader gets them: live from the event log while it runs,
rebuilt from the database once it has ended.

The database row holds the answer's text and the size of each delta, so a finished
answer replays as exactly the events that were streamed, with the same ids.
"""

import logging
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from chat.eventlog import UnknownGeneration, get_event_log
from chat.models import Generation, Message
from chat.sse import Event

logger = logging.getLogger(__name__)

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


async def events_after(generation: Generation, after: int) -> AsyncIterator[Event]:
    """Yield the generation's events after `after` until its terminal event."""
    if not generation.is_finished:
        try:
            async for event in get_event_log().read(str(generation.pk), after):
                yield event
            return
        except UnknownGeneration:
            # It ended between the caller's read and ours, or its process is gone.
            generation = await sync_to_async(_settle)(generation.pk)
    for event in stored_events(generation, after):
        yield event


def _settle(generation_id: object) -> Generation:
    """Reload a generation missing from the log; mark it interrupted if it never ended."""
    with transaction.atomic():
        generation = (
            Generation.objects.select_for_update().select_related("message").get(pk=generation_id)
        )
        if not generation.is_finished:
            logger.warning("generation %s lost its producer; marking it interrupted", generation.pk)
            mark_failed(generation, *INTERRUPTED)
        return generation


def mark_failed(generation: Generation, code: str, text: str) -> None:
    """End a generation as failed with the text stored so far (call in a transaction)."""
    message = generation.message
    message.status = Message.Status.ERROR
    message.error_code = code
    message.error_message = text
    message.save(update_fields=["status", "error_code", "error_message", "updated_at"])
    generation.last_event_id = len(generation.event_sizes) + 1
    generation.finished_at = timezone.now()
    generation.save(update_fields=["last_event_id", "finished_at"])
