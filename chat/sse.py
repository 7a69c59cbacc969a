"""
Our Server-Sent Events wire format.

Pure functions from events (chat/events.py) to bytes: what goes on the wire of our own
streams is decided here and nowhere else. A stream is read in batches (every event a
reader finds when it wakes), and each batch goes out as one chunk; an empty batch, which
the readers yield when nothing came for a heartbeat interval, goes out as a comment.
"""

import contextlib
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

from chat import wirejson
from chat.events import Event

PING = b": ping\n\n"


def encode(event: Event) -> bytes:
    """Encode an event as one SSE frame: id, event name, a single line of JSON data."""
    # JSON escapes every line break, so the data is always exactly one line.
    data = wirejson.dumps(event.data)
    if event.id is None:
        # Without an id line the client's last event id stays that of the last delta.
        return b"event: %s\ndata: %s\n\n" % (event.kind.encode(), data)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.kind.encode(), data)


def data_frame(data: Any) -> bytes:
    """A frame of data alone, as other protocols use SSE: JSON, or a literal ([DONE])."""
    return b"data: %s\n\n" % (data.encode() if isinstance(data, str) else wirejson.dumps(data))


def encode_batch(events: Iterable[Event]) -> bytes:
    """Encode the events as one chunk; no events is a heartbeat."""
    return b"".join(map(encode, events)) or PING


def preamble(retry_ms: int | None) -> bytes:
    """Return the first bytes of a stream: the reconnect delay and an opening comment."""
    # Sent at once, before the model's first token: daphne sends the headers only
    # with the first body bytes, and clients start their read timeouts on them.
    if retry_ms is None:
        return b": open\n\n"
    return f"retry: {retry_ms}\n: open\n\n".encode()


async def frames(
    batches: AsyncGenerator[list[Event]],
    *,
    retry_ms: int | None,
    encode: Callable[[list[Event]], bytes] = encode_batch,
) -> AsyncGenerator[bytes]:
    """Return a whole stream: the preamble, then a chunk per batch of events (encoded in
    our format, or `encode`'s). No `retry_ms`: no `retry:` field, for a client that reads
    one as an event."""
    yield preamble(retry_ms)
    # aclosing: a client leaving must end the batches' generator now, not when it is
    # collected (it may hold an upstream request open).
    async with contextlib.aclosing(batches):
        async for batch in batches:
            yield encode(batch)
