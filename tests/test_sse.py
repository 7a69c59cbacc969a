"""The SSE wire format and heartbeat merging, as pure functions."""

import asyncio

import pytest

from chat.events import Event
from chat.sse import PING, encode, preamble, with_heartbeat
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


async def ticks(*delays: float):
    for i, delay in enumerate(delays):
        await asyncio.sleep(delay)
        yield f"{i}".encode()


async def test_heartbeats_fill_the_silences_and_keep_the_pending_item():
    merged = [chunk async for chunk in with_heartbeat(ticks(0, 0.25), 0.1)]

    assert merged[0] == b"0"
    assert merged[-1] == b"1"
    assert merged[1:-1] == [PING] * len(merged[1:-1])
    assert len(merged[1:-1]) >= 1


async def test_no_heartbeat_when_items_keep_coming():
    merged = [chunk async for chunk in with_heartbeat(ticks(0, 0, 0), 10)]

    assert merged == [b"0", b"1", b"2"]


async def test_cancelling_the_reader_closes_the_source():
    closed = asyncio.Event()

    first = asyncio.Event()

    async def source():
        try:
            yield b"first"
            await asyncio.sleep(60)
            yield b"never"
        finally:
            closed.set()

    async def read():
        async for _ in with_heartbeat(source(), 0.01):
            first.set()

    task = asyncio.create_task(read())
    await first.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()
