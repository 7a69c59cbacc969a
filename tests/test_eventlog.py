"""The event log: numbering, replay, tailing, cancel, sealing."""

import asyncio
import uuid

import pytest

from chat.eventlog import (
    EventLogUnavailable,
    LogClosed,
    UnknownGeneration,
    get_event_log,
    redis_streams,
)
from chat.eventlog.memory import MemoryEventLog
from chat.events import Part
from tests.conftest import redis_url
from tests.servers import free_port

pytestmark = pytest.mark.anyio


async def collect(log, key, after=0):
    return [(e.id, e.kind, e.data) async for batch in log.read(key, after, 10) for e in batch]


def part(kind, **data):
    return Part(kind, data)


async def test_it_numbers_events_from_one_and_replays_after_an_id():
    log = MemoryEventLog()
    await log.open("g")
    for text in ("a", "b", "c"):
        await log.append("g", [part("delta", content=text)])
    await log.append("g", [part("done")])

    assert [e[0] for e in await collect(log, "g")] == [1, 2, 3, 4]
    assert await collect(log, "g", after=2) == [(3, "delta", {"content": "c"}), (4, "done", {})]
    assert await log.last_id("g") == 4


async def test_readers_follow_live_events_until_the_terminal_one():
    log = MemoryEventLog()
    await log.open("g")
    readers = [asyncio.create_task(collect(log, "g")) for _ in range(3)]
    await asyncio.sleep(0)
    for text in ("a", "b"):
        await log.append("g", [part("delta", content=text)])
        await asyncio.sleep(0)
    await log.append("g", [part("error", code="x")])

    results = await asyncio.gather(*readers)

    assert all([e[0] for e in result] == [1, 2, 3] for result in results)


async def test_nothing_may_follow_the_terminal_event():
    log = MemoryEventLog()
    await log.open("g")
    await log.append("g", [part("done")])

    with pytest.raises(LogClosed):
        await log.append("g", [part("delta", content="late")])
    assert await log.last_id("g") == 1


async def test_a_reader_keeps_its_events_after_the_log_is_closed():
    log = MemoryEventLog()
    await log.open("g")
    await log.append("g", [part("delta", content="a")])
    reader = log.read("g", 0, 10)
    [first] = await anext(reader)
    await log.append("g", [part("done")])
    await log.close("g")

    assert (first.id, [e.kind for e in await anext(reader)]) == (1, ["done"])
    assert await log.last_id("g") is None
    with pytest.raises(UnknownGeneration):
        await anext(log.read("g", 0, 10))


async def test_cancel_wakes_the_waiting_generation():
    log = MemoryEventLog()
    await log.open("g")
    waiting = asyncio.create_task(log.wait_cancelled("g"))
    await asyncio.sleep(0)
    assert not waiting.done()

    await log.cancel("g")

    await asyncio.wait_for(waiting, 1)


async def test_a_sealed_log_takes_only_the_terminal_event(event_log):
    log = get_event_log()
    key = f"sealed-{uuid.uuid4()}"
    await log.open(key)
    await log.append(key, [part("delta", content="a")])

    sealed = await log.seal(key)

    assert [(e.id, e.kind, e.data) for e in sealed] == [(1, "delta", {"content": "a"})]
    with pytest.raises(LogClosed):
        await log.append(key, [part("delta", content="late")])
    assert await log.append(key, [part("error", code="interrupted")]) == 2
    with pytest.raises(LogClosed):
        await log.append(key, [part("done")])
    assert [e.kind for e in await log.seal(key)] == ["delta", "error"]
    await log.close(key)


async def test_sealing_an_unknown_log_says_so(event_log):
    with pytest.raises(UnknownGeneration):
        await get_event_log().seal(f"never-opened-{uuid.uuid4()}")


async def test_a_reader_gets_what_came_meanwhile_as_one_batch(event_log):
    log = get_event_log()
    key = f"batch-{uuid.uuid4()}"
    await log.open(key)
    reader = log.read(key, 0, 10)
    assert await log.append(key, [part("delta", content="a")]) == 1
    assert [e.id for e in await anext(reader)] == [1]

    await log.append(key, [part("delta", content="b"), part("delta", content="c")])
    await log.append(key, [part("delta", content="d"), part("done")])

    assert [e.id for e in await anext(reader)] == [2, 3, 4, 5]
    with pytest.raises(StopAsyncIteration):
        await anext(reader)
    await log.close(key)


async def test_a_quiet_reader_gets_an_empty_batch_each_idle_interval(event_log):
    log = get_event_log()
    key = f"quiet-{uuid.uuid4()}"
    await log.open(key)
    reader = log.read(key, 0, 0.05)

    assert await anext(reader) == []
    assert await anext(reader) == []
    await log.append(key, [part("done")])
    assert [e.kind for e in await anext(reader)] == ["done"]
    await log.close(key)


async def test_a_terminal_event_must_come_last(event_log):
    log = get_event_log()
    key = f"last-{uuid.uuid4()}"
    await log.open(key)

    with pytest.raises(ValueError):
        await log.append(key, [part("done"), part("delta", content="after")])
    assert await log.last_id(key) == 0


async def test_appends_made_together_each_land_in_their_own_log(event_log):
    # The Redis log sends the appends of one turn of the event loop together: each keeps
    # its own outcome.
    log = get_event_log()
    keys = [f"together-{uuid.uuid4()}" for _ in range(20)]
    for key in keys:
        await log.open(key)
    await log.append(keys[0], [part("done")])
    unknown = f"never-opened-{uuid.uuid4()}"

    results = await asyncio.gather(
        *(log.append(key, [part("delta", content=key)]) for key in keys),
        log.append(unknown, [part("delta", content="lost")]),
        return_exceptions=True,
    )

    assert isinstance(results[0], LogClosed)
    assert results[1:20] == [1] * 19
    assert isinstance(results[20], UnknownGeneration)
    for key in keys[1:]:
        assert [(e.id, e.data) for e in await log.events(key)] == [(1, {"content": key})]
        await log.close(key)


async def test_appends_made_together_to_an_unreachable_redis_each_fail(settings):
    settings.CHAT_EVENT_LOG = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    log = get_event_log()

    async with asyncio.timeout(10):
        results = await asyncio.gather(
            *(log.append(f"gone-{n}", [part("delta", content="a")]) for n in range(3)),
            return_exceptions=True,
        )

    assert [type(result) for result in results] == [EventLogUnavailable] * 3


async def test_an_append_sent_again_after_its_reply_was_lost_is_stored_once(settings):
    # What redis-py's retry of a command does when the connection breaks after sending it.
    settings.CHAT_EVENT_LOG = "redis"
    settings.REDIS_URL = redis_url()
    log = get_event_log()
    key = f"retried-{uuid.uuid4()}"
    await log.open(key)
    names = redis_streams._keys(key)
    keys = [names["log"], names["meta"]]
    sent = [1000, "the-append's-token", "delta", '{"content":"once"}', "0"]

    assert await redis_streams._appends().append(keys, sent) == 1
    assert await redis_streams._appends().append(keys, sent) == 1
    assert await log.append(key, [part("done")]) == 2

    assert [(e.id, e.kind) for e in await log.events(key)] == [(1, "delta"), (2, "done")]
    await log.close(key)
