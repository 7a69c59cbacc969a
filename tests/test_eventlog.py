"""The event log: numbering, replay, tailing, cancel, sealing."""

import asyncio
import uuid

import pytest
import redis

from chat import wirejson
from chat.eventlog import (
    EventLogUnavailable,
    LogClosed,
    UnknownGeneration,
    get_event_log,
    redis_shared,
    redis_streams,
    redis_tails,
)
from chat.eventlog.base import BATCH
from chat.eventlog.memory import MemoryEventLog
from chat.events import Part
from tests.conftest import redis_url
from tests.servers import free_port
from tests.waiting import until

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


async def test_cancel_wakes_the_waiting_generation_and_no_other(event_log):
    log = get_event_log()
    keys = [f"cancel-{uuid.uuid4()}" for _ in range(3)]
    for key in keys:
        await log.open(key)
    waiting = [asyncio.create_task(log.wait_cancelled(key)) for key in keys]
    await asyncio.sleep(0.3)  # more than a poll interval
    assert not any(task.done() for task in waiting)

    await log.cancel(keys[1])

    await asyncio.wait_for(waiting[1], 2)
    await asyncio.sleep(0.3)
    assert not waiting[0].done() and not waiting[2].done()
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_waiting_for_a_cancel_on_an_unreachable_redis_fails(settings):
    settings.CHAT_EVENT_LOG = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    async with asyncio.timeout(10):
        results = await asyncio.gather(
            *(get_event_log().wait_cancelled(f"gone-{n}") for n in range(3)),
            return_exceptions=True,
        )

    assert [type(result) for result in results] == [EventLogUnavailable] * 3


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
    keys = [names["log"], names["meta"], names["tail"]]
    sent = [1000, "the-append's-token", "delta", '{"content":"once"}', "0"]

    assert await redis_shared.appends().append(redis_streams.APPEND, keys, sent) == 1
    assert await redis_shared.appends().append(redis_streams.APPEND, keys, sent) == 1
    assert await log.append(key, [part("done")]) == 2

    assert [(e.id, e.kind) for e in await log.events(key)] == [(1, "delta"), (2, "done")]
    await log.close(key)


@pytest.fixture
def redis_log(settings):
    settings.CHAT_EVENT_LOG = "redis"
    settings.REDIS_URL = redis_url()
    # Only a push can deliver within the tests' bounds: the wait runs out far later.
    settings.CHAT_LIVENESS_INTERVAL = 30
    return get_event_log()


def redis_server():
    return redis.Redis.from_url(redis_url(), decode_responses=True)


def subscribers(key: str) -> int:
    [(_, count)] = redis_server().pubsub_numsub(redis_streams._keys(key)["tail"])
    return count


def lose_the_push_of(key: str, number: int, kind: str, data: str) -> None:
    """Store an event as the append script would, without publishing it."""
    redis_server().xadd(redis_streams._keys(key)["log"], {"k": kind, "d": data}, id=f"0-{number}")


async def pushed_reader(log, key: str):
    """A reader of a new answer, its subscription made and its first event pushed."""
    await log.open(key)
    reader = log.read(key, 0, 30)
    first = asyncio.create_task(anext(reader))
    await until(lambda: subscribers(key) == 1)
    await asyncio.sleep(0.05)  # the subscription's confirmation is taken
    await log.append(key, [part("delta", content="a")])
    async with asyncio.timeout(1):
        assert [e.id for e in await first] == [1]
    return reader


async def test_readers_are_pushed_each_append_over_one_subscription(redis_log):
    keys = [f"shared-{uuid.uuid4()}" for _ in range(30)]
    for key in keys:
        await redis_log.open(key)
    readers = [asyncio.create_task(collect(redis_log, key)) for key in keys]
    await asyncio.sleep(0.3)

    clients = [c for c in redis_server().client_list() if c["name"].startswith("chat")]
    for key in keys:
        await redis_log.append(key, [part("delta", content=key), part("done")])

    # The event loop's one subscription: the readers' 30 channels and its wake channel.
    assert [int(c["sub"]) for c in clients if c["name"] == redis_tails.tails().name] == [31]
    assert [c for c in clients if "b" in c["flags"]] == []  # none blocked in a read
    async with asyncio.timeout(1):
        assert [await reader for reader in readers] == [
            [(1, "delta", {"content": key}), (2, "done", {})] for key in keys
        ]


async def test_a_reader_of_a_new_answer_wakes_the_listening_connection(redis_log):
    first = await pushed_reader(redis_log, f"first-{uuid.uuid4()}")
    await asyncio.sleep(0.1)  # the connection waits for a message

    second = await pushed_reader(redis_log, f"second-{uuid.uuid4()}")

    await first.aclose()
    await second.aclose()


async def test_a_channel_is_unsubscribed_once_its_readers_leave(redis_log):
    key = f"left-{uuid.uuid4()}"
    reader = await pushed_reader(redis_log, key)

    await reader.aclose()
    await redis_log.append(key, [part("delta", content="unread")])  # wakes the listener
    await asyncio.sleep(0.2)

    assert subscribers(key) == 0


async def test_a_reader_that_joins_as_another_leaves_is_still_pushed(redis_log):
    key = f"rejoin-{uuid.uuid4()}"
    first = await pushed_reader(redis_log, key)

    await first.aclose()
    second = redis_log.read(key, 1, 30)
    pushed = asyncio.create_task(anext(second))
    await until(lambda: subscribers(key) == 1)
    await redis_log.append(key, [part("delta", content="b")])

    async with asyncio.timeout(1):
        assert [e.id for e in await pushed] == [2]
    await redis_log.append(key, [part("done")])
    async with asyncio.timeout(1):
        assert [e.id for e in await anext(second)] == [3]


async def test_a_reader_far_behind_catches_up_in_batches_without_waiting(redis_log):
    key = f"backlog-{uuid.uuid4()}"
    live = await pushed_reader(redis_log, key)  # the channel is subscribed
    for _ in range(15):
        await redis_log.append(key, [part("delta", content=str(n)) for n in range(100)])
    await redis_log.append(key, [part("done")])

    async with asyncio.timeout(1):
        batches = [len(batch) async for batch in redis_log.read(key, 0, 30)]
        assert sum([len(batch) async for batch in live]) == 1501

    assert batches == [BATCH, 1502 - BATCH]


async def test_an_event_whose_push_was_lost_is_read_from_the_stream_in_order(redis_log):
    key = f"lost-push-{uuid.uuid4()}"
    reader = await pushed_reader(redis_log, key)

    lose_the_push_of(key, 2, "delta", '{"content":"b"}')
    await redis_log.append(key, [part("done")])

    async with asyncio.timeout(1):
        batch = await anext(reader)
    assert [(e.id, e.data) for e in batch] == [(2, {"content": "b"}), (3, {})]


async def test_a_lost_last_push_is_found_when_the_wait_runs_out(redis_log, settings):
    key = f"lost-end-{uuid.uuid4()}"
    reader = await pushed_reader(redis_log, key)
    settings.CHAT_LIVENESS_INTERVAL = 0.3  # the reader's next wait

    lose_the_push_of(key, 2, "done", "{}")

    async with asyncio.timeout(2):
        assert [(e.id, e.kind) for e in await anext(reader)] == [(2, "done")]


async def test_what_came_while_the_subscription_was_down_is_read_once_it_is_back(redis_log):
    key = f"down-{uuid.uuid4()}"
    reader = await pushed_reader(redis_log, key)
    waiting = asyncio.create_task(anext(reader))

    kill_the_subscription()
    await until(lambda: subscribers(key) == 0)
    await asyncio.sleep(0.1)  # the reader has read the stream once the listener saw it
    await redis_log.append(key, [part("delta", content="b"), part("done")])  # no one hears

    async with asyncio.timeout(3):
        events = await waiting
    assert [(e.id, e.kind) for e in events] == [(2, "delta"), (3, "done")]


async def test_readers_get_every_event_when_the_subscription_breaks(redis_log):
    key = f"reconnect-{uuid.uuid4()}"
    await redis_log.open(key)
    reader = asyncio.create_task(collect(redis_log, key))
    await redis_log.append(key, [part("delta", content="a")])
    await asyncio.sleep(0.2)

    kill_the_subscription()
    joining = [asyncio.create_task(collect(redis_log, key)) for _ in range(5)]
    for text in "bcd":
        await redis_log.append(key, [part("delta", content=text)])
    await redis_log.append(key, [part("done")])

    async with asyncio.timeout(5):
        results = await asyncio.gather(reader, *joining)
    assert [[(e[0], e[2].get("content")) for e in events] for events in results] == [
        [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, None)]
    ] * 6


def kill_the_subscription() -> None:
    name = redis_tails.tails().name
    [tails] = [c for c in redis_server().client_list() if c["name"] == name]
    redis_server().client_kill_filter(_id=tails["id"])


def test_a_push_is_parsed_into_each_events_exact_text():
    texts = ["line\nbreak", "tab\tand \u2028 and \u0085", '"quoted" \\ back', "é 🙂"]
    payload = "7\n" + "\n".join(f"delta\n{wirejson.dumps({'content': t}).decode()}" for t in texts)

    events = redis_tails.pushed_events(payload)

    assert [(e.id, e.kind, e.data["content"]) for e in events] == [
        (7 + n, "delta", text) for n, text in enumerate(texts)
    ]


async def test_a_tools_exact_integer_comes_back_exact_pushed_and_read(redis_log, caplog):
    key = f"exact-{uuid.uuid4()}"
    reader = await pushed_reader(redis_log, key)
    exact = {"name": "calculator", "result": {"value": 2**100 + 1, "negative": -(2**64) - 1}}

    await redis_log.append(key, [part("tool_end", **exact)])

    async with asyncio.timeout(1):
        [pushed] = await anext(reader)
    assert pushed.data == exact
    assert "unreadable push" not in caplog.text  # it came by the push
    assert (await redis_log.events(key))[-1].data == exact  # and the stream keeps it so


async def test_a_push_carries_each_events_text_exactly(redis_log, caplog):
    key = f"texts-{uuid.uuid4()}"
    reader = await pushed_reader(redis_log, key)
    texts = ["line\nbreak", "tab\tand \u2028 and \u0085", '"quoted" \\ back', "é 🙂"]

    await redis_log.append(key, [part("delta", content=text) for text in texts])

    async with asyncio.timeout(1):
        assert [e.data["content"] for e in await anext(reader)] == texts
    assert "unreadable push" not in caplog.text  # it came by the push, not the stream
