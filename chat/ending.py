"""
The end of a conversation's answer, claimed once.

Whoever ends an answer calls `end()`: its producer when the answer finishes or fails, a
reader or the sweeper that finds its producer gone (`settle()`), a start that could not
open the event log, a shutdown. The claim is a conditional update of the generation
(`last_event_id IS NULL`); the caller that wins writes the message, the usage and the
conversation's time in the same transaction, then gives back the user's streaming slot
and appends the terminal event. A caller that loses does none of it: the slot is given
back once, and the log holds one terminal event, whatever the race.

`done` implies stored: the terminal event is appended only after the transaction.
"""

import contextlib
import logging
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from chat import db, failures, limits, usage
from chat.answer import Answer, stored_parts, text_length
from chat.eventlog import EventLogUnavailable, LogClosed, UnknownGeneration, get_event_log
from chat.events import Ending, Event, Part
from chat.events import usage as token_usage
from chat.failures import Failure
from chat.models import Conversation, Generation, Message

logger = logging.getLogger(__name__)

LOG_FAILURES = (EventLogUnavailable, LogClosed, UnknownGeneration)


async def end(generation: Generation, answer: Answer) -> bool:
    """End the answer with this outcome, unless it has ended already; return who won.

    `generation` needs its message and conversation loaded.
    """
    try:
        claimed = await db.write(_store, generation, answer)
    except DatabaseError:
        # Nothing is claimed: a reader or the sweeper settles it once the database is back.
        logger.exception("could not store the end of generation %s", generation.pk)
        claimed = False
    key = str(generation.pk)
    log = get_event_log()
    if not claimed:
        with contextlib.suppress(*LOG_FAILURES):
            await log.close(key)
        return False
    await db.run(limits.release, generation.conversation.owner_id)
    try:
        await log.append(key, [answer.ending.part(str(generation.message.pk))])
        await log.close(key)
    except LOG_FAILURES as exc:
        # Readers rebuild the same terminal event from the database.
        logger.warning("could not end the event log of %s: %r", generation.pk, exc)
    logger.info(
        "generation %s ended: %s after %d events",
        generation.pk,
        answer.outcome,
        answer.events + 1,
        extra={
            "generation": key,
            "user": generation.conversation.owner_id,
            "model": generation.model,
            **answer.log_fields(),
        },
    )
    return True


async def settle(generation_id: Any) -> Generation | None:
    """End as interrupted an answer whose producer is gone; return it as it ended.

    What the producer had already sent to the event log is kept: the log is sealed
    first, so a producer that was only slow appends nothing more, and the answer is
    rebuilt from the log's events when it holds more than the last checkpoint. None: the
    generation was deleted, with its conversation.
    """
    try:
        logged = await get_event_log().seal(str(generation_id))
    except (UnknownGeneration, EventLogUnavailable):
        logged = []
    generation = await db.run(_load, generation_id)
    if generation is None or generation.is_finished:
        return generation
    logger.warning("generation %s lost its producer; ending it as interrupted", generation_id)
    await end(generation, salvaged(generation, logged, failures.INTERRUPTED))
    return await db.run(_load, generation_id)


async def fail(generation: Generation, failure: Failure) -> None:
    """End an answer that never started (its event log could not be opened): the model
    was never asked, so it cost nothing."""
    unasked = salvaged(generation, [], failure)
    unasked.asked_model = False
    await end(generation, unasked)


def salvaged(generation: Generation, logged: list[Event], failure: Failure) -> Answer:
    """Return what survives of an answer: the log's events, or else its last checkpoint."""
    parts = [Part(event.kind, event.data) for event in logged if not event.is_terminal]
    if len(parts) <= len(generation.event_layout):
        message = generation.message
        parts = stored_parts(
            generation.event_layout, message.content, message.reasoning, message.tool_calls
        )
    return Answer.of(parts, failure)


def stored_ending(generation: Generation) -> Ending:
    """Return how a finished generation ended, from its stored message."""
    message = generation.message
    if message.status == Message.Status.ERROR:
        return Ending(Failure(message.error_code, message.error_message), "", None, False)
    stored_usage = None
    if message.prompt_tokens is not None and message.completion_tokens is not None:
        stored_usage = token_usage(message.prompt_tokens, message.completion_tokens)
    return Ending(None, message.finish_reason, stored_usage, generation.cached)


def _load(generation_id: Any) -> Generation | None:
    related = Generation.objects.select_related("message", "conversation")
    return related.filter(pk=generation_id).first()


def _store(generation: Generation, answer: Answer) -> bool:
    """Claim the end and write the outcome, in one transaction; False if already ended."""
    now = timezone.now()
    with transaction.atomic():
        claimed = (
            Generation.objects.running()
            .filter(pk=generation.pk)
            .update(
                event_layout=answer.layout,
                last_event_id=answer.events + 1,
                finished_at=now,
                cached=answer.cached,
            )
        )
        if not claimed:
            return False
        _write_message(generation.message, answer, continued=bool(generation.continued_from))
        if answer.asked_model:
            _record_usage(generation, answer)
        Conversation.objects.filter(pk=generation.conversation_id).update(updated_at=now)
    # Readers may hold this instance (generation.started_here): the id that marks it
    # finished goes last.
    generation.event_layout = answer.layout
    generation.finished_at = now
    generation.cached = answer.cached
    generation.last_event_id = answer.events + 1
    return True


def _record_usage(generation: Generation, answer: Answer) -> None:
    """What the answer cost; a continued one, what it wrote itself (the rest is billed)."""
    usage.record(
        user_id=generation.conversation.owner_id,
        request=generation.request,
        text=answer.text[text_length(answer.layout, generation.continued_from) :],
        usage=answer.usage,
        estimated=answer.usage_estimated,
        cached=answer.cached,
        generation=generation,
        api_key_id=generation.api_key_id,
    )


def _write_message(message: Message, answer: Answer, *, continued: bool) -> None:
    message.content = answer.text
    message.reasoning = answer.reasoning_text
    if answer.thinking_seconds is not None:  # else as stored: rebuilt or continued, not timed
        message.thinking_seconds = answer.thinking_seconds
    message.tool_calls = answer.tool_calls
    if answer.failure:
        message.status = Message.Status.ERROR
        message.error_code = answer.failure.code
        message.error_message = answer.failure.message
    else:
        cancelled = answer.finish_reason == "cancelled"
        message.status = Message.Status.CANCELLED if cancelled else Message.Status.COMPLETE
        message.finish_reason = answer.finish_reason
    if answer.usage:
        # A continued answer cost what it cost before, and this.
        before = (
            (message.prompt_tokens or 0, message.completion_tokens or 0) if continued else (0, 0)
        )
        message.prompt_tokens = before[0] + answer.usage["prompt_tokens"]
        message.completion_tokens = before[1] + answer.usage["completion_tokens"]
    message.save()
