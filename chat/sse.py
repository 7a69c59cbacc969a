"""
Our Server-Sent Events wire format, and heartbeats merged into a quiet stream.

Pure functions from events (chat/events.py) to bytes: what goes on the wire of our own
streams is decided here and nowhere else.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator

from chat.events import Event

PING = b": ping\n\n"


def encode(event: Event) -> bytes:
    """Encode an event as one SSE frame: id, event name, a single line of JSON data."""
    # JSON escapes every line break, so the data is always exactly one line.
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    if event.id is None:
        # Without an id line the client's last event id stays that of the last delta.
        return f"event: {event.kind}\ndata: {data}\n\n".encode()
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


async def encode_all(events: AsyncGenerator[Event]) -> AsyncGenerator[bytes]:
    # aclosing: a client leaving must end the events' generator now, not when it is
    # collected (it may hold an upstream request open).
    async with contextlib.aclosing(events):
        async for event in events:
            yield encode(event)


async def frames(
    events: AsyncGenerator[Event], *, retry_ms: int, heartbeat: float
) -> AsyncIterator[bytes]:
    """Return a whole stream: the preamble, then the events, with heartbeats when quiet."""
    yield preamble(retry_ms)
    async for frame in with_heartbeat(encode_all(events), heartbeat):
        yield frame


def preamble(retry_ms: int) -> bytes:
    """Return the first bytes of a stream: the reconnect delay and an opening comment."""
    # Sent at once, before the model's first token: daphne sends the headers only
    # with the first body bytes, and clients start their read timeouts on them.
    return f"retry: {retry_ms}\n: open\n\n".encode()


async def with_heartbeat(source: AsyncGenerator[bytes], interval: float) -> AsyncIterator[bytes]:
    """Yield from source, and a ping comment whenever it is quiet for `interval` seconds."""
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            # asyncio.wait leaves `pending` running on timeout; wait_for would cancel it.
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield PING
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            # Let the cancelled step unwind, or aclose() finds the generator running.
            await asyncio.wait({pending})
        await source.aclose()
