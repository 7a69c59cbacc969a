"""
A generation's events as a reader gets them: live from the event log while it runs,
rebuilt from the database once it has ended.

The database rows hold the answer's text, reasoning and tool calls and the layout of its
events (chat/answer.py), so a finished answer replays as exactly the events that were
streamed, with the same ids. A reader
that finds the producer gone settles the answer (chat/ending.py) and replays that.
"""

from collections.abc import AsyncGenerator

from chat import ending, failures
from chat.answer import stored_parts, text_length
from chat.eventlog import EventLogUnavailable, UnknownGeneration, get_event_log
from chat.events import DELTA, Ending, Event
from chat.models import Generation


def stored_events(generation: Generation, after: int) -> list[Event]:
    """Rebuild a finished generation's events after the given id from the database."""
    assert generation.last_event_id is not None
    message = generation.message
    parts = stored_parts(
        generation.event_layout, message.content, message.reasoning, message.tool_calls
    )
    events = [
        Event(event_id, part.kind, part.data)
        for event_id, part in enumerate(parts, start=1)
        if event_id > after
    ]
    if generation.last_event_id > after:  # a reader that saw the end gets it once
        ended = ending.stored_ending(generation)
        events.append(ended.event(generation.last_event_id, str(generation.message.pk)))
    return events


async def text_before(generation: Generation, after: int) -> str | None:
    """Return the answer's text up to event `after`, or None if it cannot be known."""
    if after == 0:
        return ""
    if generation.is_finished:
        return generation.message.content[: text_length(generation.event_layout, after)]
    try:
        logged = await get_event_log().events(str(generation.pk))
    except (UnknownGeneration, EventLogUnavailable):
        return None
    return "".join(
        e.data["content"] for e in logged if e.kind == DELTA and e.id is not None and e.id <= after
    )


async def events_after(
    generation: Generation, after: int, idle: float
) -> AsyncGenerator[list[Event]]:
    """Yield the generation's events after `after` until its terminal event, in batches;
    nothing for a reader past the terminal event.

    An empty batch says nothing happened for `idle` seconds.
    """
    position = after
    if not generation.is_finished:
        try:
            async for batch in get_event_log().read(str(generation.pk), position, idle):
                position = batch[-1].id or position if batch else position
                yield batch
            return
        except UnknownGeneration:
            # It ended and its log is gone, or its producer died mid-answer.
            settled = await ending.settle(generation.pk)
            if settled is None:
                deleted = Ending(failures.DELETED, "", None, False)
                yield [deleted.event(position + 1, None)]
                return
            generation = settled
    if events := stored_events(generation, position):
        yield events
