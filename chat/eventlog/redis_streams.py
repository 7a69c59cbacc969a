"""
Events in Redis Streams: any server process can serve any reader and take any cancel.

Per generation (all keys expire; none outlives CHAT_EVENT_LOG_RETAIN after the end):
- `chat:log:<id>`: the stream; event N is entry `0-N`, so XREAD after `0-N` is
  "after event N";
- `chat:meta:<id>`: a hash that says the log is open, and `ended` once the terminal
  event is in;
- `chat:alive:<id>`: refreshed by the producing process while it runs; its expiry is how
  readers learn that the producer died;
- `chat:cancel:<id>`: set by a cancel, from any process;
- `chat:read:<id>`: refreshed by readers, so an answer nobody reads can be abandoned;
- `chat:tail:<id>`: a channel, not a key: each append is published there with its events,
  for the readers that follow the answer (redis_tails.Tails).
"""

import functools
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, cast

import redis.asyncio as redis
from django.conf import settings

from chat import wirejson
from chat.eventlog.base import BATCH, EventLogUnavailable, LogClosed, UnknownGeneration
from chat.eventlog.redis_shared import appends, cancels, event_data, get_client
from chat.eventlog.redis_tails import Follower, tails
from chat.events import Event, Part

# Stream entries as redis-py returns them with decode_responses: (id, fields) pairs.
type Entries = list[tuple[str, dict[str, str]]]

# The meta hash's `ended`: "0" while the producer appends, "sealed" once someone else
# is ending the answer (only the terminal event may follow), "1" after the terminal event.

# Appends events atomically: refuses an unknown, ended or sealed log (a sealed one takes
# a lone terminal event), numbers them, marks the end, publishes them on the tail channel
# (the first id, then each event's kind and data, a line each). KEYS: log, meta, tail.
# ARGV: maxlen, the append's token, then per event its kind, its data and "1" if it is
# terminal. Returns the last id, -1 unknown, -2 closed. The same append sent again
# (redis-py retries a command whose reply was lost) finds its token and returns its id
# instead of adding its events twice.
APPEND = """
local state = redis.call('HGET', KEYS[2], 'ended')
if not state then return -1 end
if redis.call('HGET', KEYS[2], 'token') == ARGV[2] then
  return tonumber(redis.call('HGET', KEYS[2], 'last'))
end
local lone_terminal = #ARGV == 5 and ARGV[5] == '1'
if state == '1' or (state == 'sealed' and not lone_terminal) then return -2 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local n = 0
if #last > 0 then n = tonumber(string.match(last[1][1], '%d+$')) end
local pushed = {n + 1}
for i = 3, #ARGV, 3 do
  n = n + 1
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '0-' .. n, 'k', ARGV[i], 'd', ARGV[i + 1])
  if ARGV[i + 2] == '1' then redis.call('HSET', KEYS[2], 'ended', '1') end
  pushed[#pushed + 1] = ARGV[i]
  pushed[#pushed + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[2], 'token', ARGV[2], 'last', n)
redis.call('EXPIRE', KEYS[1], redis.call('TTL', KEYS[2]))
redis.call('PUBLISH', KEYS[3], table.concat(pushed, '\\n'))
return n
"""

# Seals an open log and returns its entries; false for an unknown log.
SEAL = """
local state = redis.call('HGET', KEYS[2], 'ended')
if not state then return false end
if state == '0' then redis.call('HSET', KEYS[2], 'ended', 'sealed') end
return redis.call('XRANGE', KEYS[1], '-', '+')
"""


def _translated[**P, R](
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn Redis failures into EventLogUnavailable, the one error callers handle."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except redis.RedisError as exc:
            raise EventLogUnavailable(str(exc)) from exc

    return wrapper


def _keys(generation_id: str) -> dict[str, str]:
    return {
        name: f"chat:{name}:{generation_id}"
        for name in ("log", "meta", "alive", "cancel", "read", "tail")
    }


class RedisEventLog:
    """Events in Redis Streams, shared by every server process."""

    @property
    def _redis(self) -> redis.Redis:
        return get_client()

    @_translated
    async def open(self, generation_id: str) -> None:
        keys = _keys(generation_id)
        ttl = int(settings.CHAT_GENERATION_TIMEOUT + settings.CHAT_EVENT_LOG_RETAIN)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys["meta"], mapping={"ended": "0", "opened": str(time.time())})
            pipe.expire(keys["meta"], ttl)
            pipe.set(keys["alive"], "1", ex=_alive_ttl())
            pipe.set(keys["read"], str(time.time()), ex=ttl)
            await pipe.execute()

    @_translated
    async def append(self, generation_id: str, parts: Sequence[Part]) -> int:
        if any(part.is_terminal for part in parts[:-1]):
            raise ValueError("a terminal event can only come last")
        keys = _keys(generation_id)
        args: list[Any] = [settings.CHAT_EVENT_LOG_MAXLEN, uuid.uuid4().hex]
        for part in parts:
            args += [part.kind, wirejson.dumps(part.data), "1" if part.is_terminal else "0"]
        number = await appends().append(APPEND, [keys["log"], keys["meta"], keys["tail"]], args)
        if number == -1:
            raise UnknownGeneration(generation_id)
        if number == -2:
            raise LogClosed(generation_id)
        return int(number)

    async def read(self, generation_id: str, after: int, idle: float) -> AsyncIterator[list[Event]]:
        try:
            async for batch in self._read(generation_id, after, idle):
                yield batch
        except redis.RedisError as exc:
            raise EventLogUnavailable(str(exc)) from exc

    async def _read(
        self, generation_id: str, after: int, idle: float
    ) -> AsyncIterator[list[Event]]:
        channel = _keys(generation_id)["tail"]
        followed = tails()
        follower = await followed.follow(channel)
        try:
            async for batch in self._follow(generation_id, follower, after, idle):
                yield batch
        finally:
            followed.unfollow(channel, follower)

    async def _follow(
        self, generation_id: str, follower: Follower, after: int, idle: float
    ) -> AsyncIterator[list[Event]]:
        # Waits no longer than a liveness interval: then the producer's mark is checked.
        position = after
        heartbeat_due = time.monotonic() + idle
        while True:
            wait = min(heartbeat_due - time.monotonic(), settings.CHAT_LIVENESS_INTERVAL)
            pushed = follower.take(position) if await follower.wait(wait) else None
            # The stream is read when the pushes may not hold all that came, and when the
            # wait ran out: a push lost without word costs at most one interval.
            batch = await self._after(generation_id, position) if pushed is None else pushed
            if len(batch) == BATCH:  # there may be more, which no push will announce
                follower.must_resync()
            if not batch:
                if pushed is None:
                    await self._check_producer(generation_id)
                # The wait may end a moment early: a heartbeat due within 10 ms is due.
                if time.monotonic() >= heartbeat_due - 0.01:
                    heartbeat_due = time.monotonic() + idle
                    yield []
                continue
            end = next((i + 1 for i, event in enumerate(batch) if event.is_terminal), len(batch))
            batch = batch[:end]
            position = batch[-1].id or position
            heartbeat_due = time.monotonic() + idle
            yield batch
            if batch[-1].is_terminal:
                return

    async def _after(self, generation_id: str, position: int) -> list[Event]:
        """Up to BATCH events after `position`, read from the stream without waiting."""
        log = _keys(generation_id)["log"]
        found = await self._redis.xread({log: f"0-{position}"}, count=BATCH)
        batch = _events(_entries(found)) if found else []
        if batch and batch[0].id != position + 1:
            raise UnknownGeneration(generation_id)  # trimmed past the reader
        return batch

    async def _check_producer(self, generation_id: str) -> None:
        keys = _keys(generation_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys["meta"], "ended")
            pipe.exists(keys["alive"])
            ended, alive = await pipe.execute()
        if ended is None or (ended != "1" and not alive):
            raise UnknownGeneration(generation_id)

    @_translated
    async def events(self, generation_id: str) -> list[Event]:
        keys = _keys(generation_id)
        if not await self._redis.exists(keys["meta"]):
            raise UnknownGeneration(generation_id)
        return _events(cast(Entries, await self._redis.xrange(keys["log"])))

    @_translated
    async def seal(self, generation_id: str) -> list[Event]:
        keys = _keys(generation_id)
        script = self._redis.register_script(SEAL)
        entries = await script(keys=[keys["log"], keys["meta"]])
        if entries is None:
            raise UnknownGeneration(generation_id)
        # A script's reply is always RESP2-shaped: an entry's fields as a flat list.
        return _events(
            [(entry_id, dict(zip(f[::2], f[1::2], strict=True))) for entry_id, f in entries]
        )

    @_translated
    async def last_id(self, generation_id: str) -> int | None:
        keys = _keys(generation_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys["meta"])
            pipe.xrevrange(keys["log"], count=1)
            exists, last = await pipe.execute()
        if not exists:
            return None
        return int(last[0][0].rsplit("-", 1)[1]) if last else 0

    @_translated
    async def cancel(self, generation_id: str) -> None:
        keys = _keys(generation_id)
        if not await self._redis.exists(keys["meta"]):
            raise UnknownGeneration(generation_id)
        await self._redis.set(keys["cancel"], "1", ex=int(settings.CHAT_GENERATION_TIMEOUT) + 60)

    @_translated
    async def wait_cancelled(self, generation_id: str) -> None:
        # Polled, not pushed: a cancel published while a subscription was down would be
        # lost, where the key stays; one MGET a poll for all the process's answers.
        await cancels().wait(_keys(generation_id)["cancel"])

    @_translated
    async def keep_alive(self, generation_id: str) -> None:
        await self._redis.set(_keys(generation_id)["alive"], "1", ex=_alive_ttl())

    @_translated
    async def producer_alive(self, generation_id: str) -> bool:
        return bool(await self._redis.exists(_keys(generation_id)["alive"]))

    @_translated
    async def touch_reader(self, generation_id: str) -> None:
        # xx: only while the generation runs (close() deletes the key).
        await self._redis.set(
            _keys(generation_id)["read"],
            str(time.time()),
            xx=True,
            ex=int(settings.CHAT_GENERATION_TIMEOUT) + 60,
        )

    @_translated
    async def last_read(self, generation_id: str) -> float | None:
        value = await self._redis.get(_keys(generation_id)["read"])
        return float(value) if value else None

    @_translated
    async def close(self, generation_id: str) -> None:
        keys = _keys(generation_id)
        retain = int(settings.CHAT_EVENT_LOG_RETAIN)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.expire(keys["log"], retain)
            pipe.expire(keys["meta"], retain)
            pipe.delete(keys["alive"], keys["cancel"], keys["read"])
            await pipe.execute()


def _alive_ttl() -> int:
    # Three missed refreshes and the producer counts as dead.
    return max(1, math.ceil(settings.CHAT_LIVENESS_INTERVAL * 3))


def _events(entries: Entries) -> list[Event]:
    return [
        Event(int(entry_id.rsplit("-", 1)[1]), fields["k"], event_data(fields["k"], fields["d"]))
        for entry_id, fields in entries
    ]


def _entries(found: Any) -> Entries:
    # RESP3 (redis-py 8's default) answers a dict {key: [entries]}; RESP2 a list of pairs.
    if isinstance(found, dict):
        return cast(Entries, next(iter(found.values()))[0] if found else [])
    return cast(Entries, found[0][1])
