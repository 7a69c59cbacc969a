"""
What the answers and readers of one event loop share in Redis, so that the work of many
costs a round trip, not one each:

- the client and its connection pool;
- `Appends`: the appends made in one turn of the loop, sent in one pipeline;
- `Cancels`: the cancel keys of every answer the loop runs, read with one MGET a poll;
- `Tails`: one connection subscribed to the channel of every answer the loop's readers
  follow, on which each append is published with its events.

redis.asyncio's connections belong to one event loop, hence one of each per loop.
"""

import asyncio
import contextlib
import json
import weakref
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from django.conf import settings

from chat.eventlog.base import BATCH
from chat.events import Event

type _PerLoop[T] = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T]


def _of_this_loop[T](registry: _PerLoop[T], make: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    if loop not in registry:
        registry[loop] = make()
    return registry[loop]


_clients: _PerLoop[redis.Redis] = weakref.WeakKeyDictionary()


def get_client() -> redis.Redis:
    return _of_this_loop(_clients, _new_client)


def _new_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        decode_responses=True,
        # A socket timeout shorter than a liveness interval (redis-py's default is 5 s)
        # would cut off commands that wait up to one.
        socket_timeout=settings.CHAT_LIVENESS_INTERVAL + 5,
        socket_connect_timeout=5,
        socket_keepalive=True,
        max_connections=settings.CHAT_REDIS_MAX_CONNECTIONS,
    )


class Appends:
    """The appends of one event loop's answers, sent together: those made in one turn of
    the loop go to Redis in one pipeline, one round trip; a lone append goes on the next
    turn."""

    def __init__(self) -> None:
        self._waiting: list[tuple[str, list[str], list[Any], asyncio.Future[int]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def append(self, script: str, keys: list[str], args: list[Any]) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._waiting.append((script, keys, args, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    @staticmethod
    async def _send(batch: list[tuple[str, list[str], list[Any], asyncio.Future[int]]]) -> None:
        try:
            async with get_client().pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    # EVAL: Redis keeps the compiled script; a restart loses nothing.
                    pipe.eval(script, len(keys), *keys, *args)
                results: list[Any] = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for *_, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # Redis unreachable: no append of the batch is confirmed
            results = [exc] * len(batch)
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


_appends: _PerLoop[Appends] = weakref.WeakKeyDictionary()


def appends() -> Appends:
    return _of_this_loop(_appends, Appends)


class Cancels:
    """The cancels that one event loop's answers wait for: every poll interval, one MGET
    of all their cancel keys instead of an EXISTS per answer."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._polling: asyncio.Task[None] | None = None

    async def wait(self, key: str) -> None:
        """Return once `key` is set; raise the Redis error of a poll that failed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, set()).add(future)
        if self._polling is None:
            self._polling = asyncio.create_task(self._poll())
        try:
            await future
        finally:
            waiters = self._waiting.get(key, set())
            waiters.discard(future)
            if not waiters:
                self._waiting.pop(key, None)

    async def _poll(self) -> None:
        try:
            while self._waiting:
                keys = list(self._waiting)
                try:
                    values = await get_client().mget(keys)
                except redis.RedisError as exc:
                    self._settle(keys, exc)
                else:
                    cancelled = [key for key, value in zip(keys, values, strict=True) if value]
                    self._settle(cancelled, None)
                await asyncio.sleep(settings.CHAT_CANCEL_POLL_INTERVAL)
        finally:
            self._polling = None

    def _settle(self, keys: list[str], error: Exception | None) -> None:
        for key in keys:
            for future in self._waiting.pop(key, set()):
                if future.done():
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)


_cancels: _PerLoop[Cancels] = weakref.WeakKeyDictionary()


def cancels() -> Cancels:
    return _of_this_loop(_cancels, Cancels)


class Follower:
    """One reader's share of its answer's channel: the events pushed since it last took
    them, or word that it must read the stream itself (`resync`): when it starts, when
    the channel's subscription is made again, when a push is missing, when it lags."""

    def __init__(self) -> None:
        self.pushed: list[Event] = []
        self.resync = False
        self.woken = asyncio.Event()

    async def wait(self, seconds: float) -> bool:
        """Wait for a push or a resync; False if `seconds` passed first."""
        try:
            async with asyncio.timeout(seconds):
                await self.woken.wait()
        except TimeoutError:
            return False
        return True

    def take(self, position: int) -> list[Event] | None:
        """The pushed events after `position`; None when the stream must be read instead."""
        pushed, self.pushed = self.pushed, []
        self.woken.clear()
        if self.resync:
            self.resync = False
            return None
        events = [event for event in pushed if event.id is not None and event.id > position]
        if events and events[0].id != position + 1:
            return None  # a push was lost (the subscription broke meanwhile)
        return events

    def push(self, events: list[Event]) -> None:
        if len(self.pushed) + len(events) > BATCH:  # it lags: it reads the stream instead
            self.pushed = []
            self.must_resync()
        else:
            self.pushed += events
            self.woken.set()

    def must_resync(self) -> None:
        self.resync = True
        self.woken.set()


class Tails:
    """One subscription to the channel of every answer this event loop's readers follow.

    Redis pushes each append to its channel as it stores it, so a reader waits for the
    push instead of sending a blocking XREAD of its own each time it wakes. The push is
    a shortcut, never the record: a reader reads the stream whenever a push could have
    been lost (see Follower).
    """

    def __init__(self) -> None:
        self._pubsub = get_client().pubsub()
        self._followers: dict[str, set[Follower]] = {}
        self._confirmed: set[str] = set()
        self._listening: asyncio.Task[None] | None = None
        self._unsubscribing: set[asyncio.Task[Any]] = set()

    async def follow(self, channel: str) -> Follower:
        """Subscribe a follower; it is told to read the stream once the subscription
        is confirmed, so nothing published after that read can be missed."""
        follower = Follower()
        followers = self._followers.setdefault(channel, set())
        followers.add(follower)
        if channel in self._confirmed:
            follower.must_resync()
        elif len(followers) == 1:
            try:
                await self._pubsub.subscribe(channel)
            except BaseException:
                self.unfollow(channel, follower)
                raise
        if self._listening is None:
            self._listening = asyncio.create_task(self._listen())
        return follower

    def unfollow(self, channel: str, follower: Follower) -> None:
        followers = self._followers.get(channel, set())
        followers.discard(follower)
        if not followers:
            self._drop(channel)

    def _drop(self, channel: str) -> None:
        self._followers.pop(channel, None)
        self._confirmed.discard(channel)
        task = asyncio.create_task(self._unsubscribe(channel))
        self._unsubscribing.add(task)
        task.add_done_callback(self._unsubscribing.discard)

    async def _unsubscribe(self, channel: str) -> None:
        # A subscription that outlives a failure here is dropped when it is confirmed.
        with contextlib.suppress(redis.RedisError):
            await self._pubsub.unsubscribe(channel)

    async def _listen(self) -> None:
        try:
            while self._followers:
                try:
                    message = await self._pubsub.get_message(timeout=None)
                except redis.RedisError:
                    # Pushes may be lost: every follower reads the stream, where its
                    # own read reports Redis's failure; the next read reconnects.
                    self._confirmed.clear()
                    for followers in self._followers.values():
                        for follower in followers:
                            follower.must_resync()
                    await asyncio.sleep(settings.CHAT_CANCEL_POLL_INTERVAL)
                    continue
                if message is not None:
                    self._take(message)
        finally:
            self._listening = None

    def _take(self, message: dict[str, Any]) -> None:
        followers = self._followers.get(message["channel"], ())
        if message["type"] == "subscribe" and not followers:  # kept over a reconnect
            self._drop(message["channel"])
        elif message["type"] == "subscribe":  # made, or made again after a reconnect
            self._confirmed.add(message["channel"])
            for follower in followers:
                follower.must_resync()
        elif message["type"] == "message" and followers:
            events = _pushed_events(message["data"])
            for follower in followers:
                follower.push(events)


_tails: _PerLoop[Tails] = weakref.WeakKeyDictionary()


def tails() -> Tails:
    return _of_this_loop(_tails, Tails)


def _pushed_events(payload: str) -> list[Event]:
    """Parse what APPEND publishes: the first event's id, then each event's kind and
    data, one per line (compact JSON holds no raw newline)."""
    first, *fields = payload.split("\n")
    return [
        Event(number, kind, json.loads(data))
        for number, kind, data in zip(
            range(int(first), int(first) + len(fields) // 2),
            fields[::2],
            fields[1::2],
            strict=True,
        )
    ]
