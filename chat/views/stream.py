"""The SSE stream of a generation's events, for EventSource and for fetch readers."""

import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase

from chat import db, refusals, sse, stream_access
from chat.blocks import with_blocks
from chat.eventlog import EventLogUnavailable, get_event_log
from chat.events import Event
from chat.generation import started_here
from chat.models import Generation
from chat.replay import events_after, text_before
from chat.views.decorators import api_stream_view, logged_in
from chat.views.responses import BadRequest, EventStream

logger = logging.getLogger(__name__)

EVENT_ID = re.compile(r"\d{1,18}")


@api_stream_view
async def generation_stream(request: HttpRequest, pk: str) -> HttpResponseBase:
    generation = await _readable(request, pk)
    after = last_event_id(request)
    if generation.is_finished:
        assert generation.last_event_id is not None
        if after >= generation.last_event_id:
            # Past the end: 204 tells EventSource to stop reconnecting.
            return HttpResponse(status=204)
    else:
        try:
            produced = await get_event_log().last_id(str(generation.pk))
        except EventLogUnavailable:
            raise refusals.event_log_unavailable() from None
        if produced is not None and after > produced:
            raise BadRequest("bad_last_event_id", "Last-Event-ID is past the end of this stream.")
    batches = events_after(generation, after, settings.CHAT_SSE_HEARTBEAT)
    if request.GET.get("render") == "blocks":
        batches = with_blocks(batches, await text_before(generation, after))
    return event_stream_response(generation, batches)


async def _readable(request: HttpRequest, pk: str) -> Generation:
    """Return the generation if the request may read it: by its token (chat/stream_access.py,
    no session read), else its session. One this process runs needs no query."""
    generation = started_here(pk) or await db.run(_generation, pk)
    if generation is not None and stream_access.token_admits(request, generation):
        return generation
    user = (await logged_in(request)).user
    if generation is None or generation.conversation.owner_id != user.pk:
        raise Http404("No such generation.")
    return generation


def _generation(pk: str) -> Generation | None:
    related = Generation.objects.select_related("message", "conversation")
    return related.filter(pk=pk).first()


def last_event_id(request: HttpRequest) -> int:
    """Return the id the client has seen, from Last-Event-ID or ?last_event_id=."""
    raw = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "0"
    if not EVENT_ID.fullmatch(raw.strip()):
        raise BadRequest("bad_last_event_id", "Last-Event-ID must be a non-negative integer.")
    return int(raw)


def accepts_event_stream(request: HttpRequest) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


@dataclass(frozen=True)
class Wire:
    """A protocol on SSE: how a batch of events is written, the `retry:` field, headers."""

    encode: Callable[[list[Event]], bytes]
    retry_ms: int | None
    headers: dict[str, str] = field(default_factory=dict)


def event_stream_response(
    generation: Generation,
    batches: AsyncGenerator[list[Event]] | None = None,
    wire: Wire | None = None,
) -> EventStream:
    """Stream a generation's events (by default all of them) as SSE, with heartbeats, in
    our format or in another protocol's (`wire`).

    A reader keeps the answer from being abandoned; a broken event log ends the response
    (the client reconnects and resumes).
    """
    batches = batches or events_after(generation, 0, settings.CHAT_SSE_HEARTBEAT)
    wire = wire or Wire(sse.encode_batch, settings.CHAT_SSE_RETRY_MS)
    response = EventStream(_frames(str(generation.pk), batches, wire))
    for name, value in wire.headers.items():
        response[name] = value
    return response


async def _frames(
    generation_id: str, batches: AsyncGenerator[list[Event]], wire: Wire
) -> AsyncIterator[bytes]:
    frames = sse.frames(batches, retry_ms=wire.retry_ms, encode=wire.encode)
    last_touch = -math.inf  # the first touch follows the first bytes
    try:
        async for frame in frames:
            yield frame
            if time.monotonic() - last_touch >= settings.CHAT_SSE_HEARTBEAT:
                # Someone is still reading: the answer is not abandoned.
                await _touch(generation_id)
                last_touch = time.monotonic()
    except EventLogUnavailable as exc:
        # End the response: EventSource reconnects with Last-Event-ID and resumes.
        logger.warning("stream of %s broke off: %s", generation_id, exc)


async def _touch(generation_id: str) -> None:
    # Advisory only: a finished answer replays from the database without the log.
    with contextlib.suppress(EventLogUnavailable):
        await get_event_log().touch_reader(generation_id)
