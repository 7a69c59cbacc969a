"""The SSE wire format: events, batches, heartbeats, the preamble."""

import asyncio

import pytest

from chat.events import Event
from chat.sse import PING, encode, encode_batch, frames, preamble
from tests.asgi_client import parse_events

pytestmark = pytest.mark.anyio


def test_it_encodes_an_event_as_id_name_and_one_line_of_json():
    frame = encode(Event(7, "delta", {"content": "two\nlines\r\nand \u2028 é 🎉"}))

    assert frame == (
        b"id: 7\nevent: delta\n"
        + 'data: {"content":"two\\nlines\\r\\nand \u2028 é 🎉"}\n\n'.encode()
    )
    [event], _ = parse_events(frame)
    assert event.data["content"] == "two\nlines\r\nand \u2028 é 🎉"


def test_a_leading_space_in_the_content_survives_the_browsers_parser():
    [event], _ = parse_events(encode(Event(1, "delta", {"content": " leading"})))

    assert event.data == {"content": " leading"}


def test_the_preamble_sets_the_retry_delay_and_opens_with_a_comment():
    assert preamble(2500) == b"retry: 2500\n: open\n\n"


def test_a_batch_goes_out_as_one_chunk_and_an_empty_one_as_a_heartbeat():
    batch = [Event(1, "delta", {"content": "a"}), Event(2, "done", {"finish_reason": "stop"})]

    chunk = encode_batch(batch)

    assert chunk == encode(batch[0]) + encode(batch[1])
    assert encode_batch([]) == PING


async def test_a_stream_is_the_preamble_then_a_chunk_per_batch():
    async def batches():
        yield [Event(1, "delta", {"content": "a"})]
        yield []
        yield [Event(2, "delta", {"content": "b"}), Event(3, "done", {})]

    chunks = [chunk async for chunk in frames(batches(), retry_ms=1000)]

    assert chunks[0] == preamble(1000)
    assert chunks[2] == PING
    assert [e.id for e in parse_events(b"".join(chunks))[0]] == [1, 2, 3]
    assert len(chunks) == 4


async def test_a_reader_leaving_closes_the_batches():
    closed = asyncio.Event()

    async def batches():
        try:
            yield [Event(1, "delta", {"content": "first"})]
            await asyncio.sleep(60)
        finally:
            closed.set()

    stream = frames(batches(), retry_ms=1000)
    await anext(stream)
    await anext(stream)
    await stream.aclose()

    assert closed.is_set()
