"""
What the answers and readers of one event loop share in Redis, so that the work of many
costs a round trip, not one each:

- the client and its connection pool;
- `Appends`: the appends made in one turn of the loop, sent in one pipeline;
- `Cancels`: the cancel keys of every answer the loop runs, read with one MGET a poll.

(And redis_tails.Tails: one subscription for every answer the loop's readers follow.)

redis.asyncio's connections belong to one event loop, hence one of each per loop.
"""

import asyncio
import json
import weakref
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from django.conf import settings

from chat import wirejson
from chat.eventlog.base import EventLogUnavailable
from chat.events import DELTA, REASONING

type PerLoop[T] = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T]


def of_this_loop[T](registry: PerLoop[T], make: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    if loop not in registry:
        registry[loop] = make()
    return registry[loop]


_clients: PerLoop[redis.Redis] = weakref.WeakKeyDictionary()


def get_client() -> redis.Redis:
    return of_this_loop(
        _clients,
        lambda: new_client("chat", max_connections=settings.CHAT_REDIS_MAX_CONNECTIONS),
    )


def new_client(name: str, **options: Any) -> redis.Redis:
    """A client of REDIS_URL, named `name` in Redis's CLIENT LIST."""
    return redis.Redis.from_url(
        settings.REDIS_URL,
        decode_responses=True,
        client_name=name,
        socket_timeout=5,  # for commands; a pubsub's get_message() passes its own
        socket_connect_timeout=5,
        socket_keepalive=True,
        **options,
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
            results = [_failure(exc) for _ in batch]
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


_appends: PerLoop[Appends] = weakref.WeakKeyDictionary()


def appends() -> Appends:
    return of_this_loop(_appends, Appends)


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
                except Exception as exc:
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
                    future.set_exception(_failure(error))


_cancels: PerLoop[Cancels] = weakref.WeakKeyDictionary()


def cancels() -> Cancels:
    return of_this_loop(_cancels, Cancels)


def _failure(error: Exception) -> EventLogUnavailable:
    """One error for each waiter on a failed round trip: an exception raised in several
    tasks would gather every task's traceback."""
    failure = EventLogUnavailable(str(error))
    failure.__cause__ = error
    return failure


def event_data(kind: str, data: bytes | str) -> Any:
    """An event's data as the log holds it (JSON). A token's text is read with orjson, on
    the per-token path; any other event with the standard library, which keeps a tool's
    integers past 64 bits exact (orjson reads them as floats)."""
    if kind in (DELTA, REASONING):
        return wirejson.loads(data)
    return json.loads(data)
