"""
Database work from async code, and the connections it leaves behind.

A streaming response or a background answer can live for minutes; a database connection
it kept for that long would be one connection per open stream. So the boundaries give
connections back, not the code in between:
- `run(fn, ...)`: a self-contained piece of sync database work. In a request that has a
  thread of its own (a page's), on that thread, whose connection Django closes at the
  request's end: a second thread would need a second connection while the request holds
  one, and with a bounded pool (PostgreSQL) enough requests at once would wait for each
  other forever. Elsewhere (the API's requests, background answers, streams), on one of
  the event loop's few worker threads, its connection given back as it returns
  (PostgreSQL's to the pool; SQLite's stays open on its worker thread, `_give_back`);
- `given_back()`: around a background task, closes what its async ORM calls opened on
  asgiref's shared thread.

`write(fn, ...)` is `run` for work that writes: on SQLite, one writer at a time per
process, in order of arrival. SQLite lets one transaction write at a time, and its own
wait (polling with growing sleeps) lets some writers starve under a burst until they
fail with "database is locked"; here they queue instead. A view's write
(`bounded_writes()`, chat/handler.py) queues for at most CHAT_DB_WRITE_WAIT seconds, then
gets `WritesBusy` (the views answer 503 with Retry-After); other work waits its turn
however long.

`serialize_transaction()` makes transactions that must not overlap take turns.
"""

import asyncio
import contextlib
import functools
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar

from asgiref.sync import AsyncToSync, SyncToAsync, sync_to_async
from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
)
from django.db.utils import load_backend
from psycopg_pool import PoolTimeout

_writer = threading.Lock()  # SQLite's one writer, in this process
# Each event loop's queue of writers, in order of arrival.
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)
_bounded: ContextVar[bool] = ContextVar("bounded_writes", default=False)


class WritesBusy(OperationalError):
    """A request waited CHAT_DB_WRITE_WAIT seconds for its turn to write (SQLite)."""


def overloaded(error: DatabaseError) -> bool:
    """Tell whether the database is too busy for the request now, rather than failing.

    SQLite: its write queue was too long (WritesBusy); PostgreSQL: no pooled connection
    came free within CHAT_DB_POOL_TIMEOUT.
    """
    return isinstance(error, WritesBusy) or isinstance(error.__cause__, PoolTimeout)


async def run[**P, R](fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run sync database work: on the request's thread, else on any worker thread."""
    if _in_request():
        return await sync_to_async(fn)(*args, **kwargs)

    def call() -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            _give_back()

    return await sync_to_async(call, thread_sensitive=False)()


def _give_back() -> None:
    """Close what the work on this worker thread opened, except a sound SQLite connection.

    Opening an SQLite connection (and closing the last one, which checkpoints the WAL)
    cost more than an answer's writes; the executor's few threads keep one each. A
    connection left in a transaction or after an error is closed all the same.
    """
    kept = connection.vendor == "sqlite" and connection.connection is not None
    if kept and not connection.errors_occurred and connection.get_autocommit():
        return
    close_old_connections()


async def write[**P, R](fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run sync database work that writes, as `run` does; on SQLite one at a time.

    The turn is taken on the event loop, so no worker thread is held while it waits; the
    thread lock after it keeps the order against writers of other loops or threads.
    """
    if not _on_sqlite():
        return await run(fn, *args, **kwargs)
    turn = _turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    try:
        async with asyncio.timeout(settings.CHAT_DB_WRITE_WAIT if _bounded.get() else None):
            await turn.acquire()
    except TimeoutError:
        raise WritesBusy("too many writes are waiting; retry in a moment") from None
    try:
        return await run(_as_the_writer, fn, *args, **kwargs)
    finally:
        turn.release()


def _on_sqlite() -> bool:
    # Not `connections["default"].vendor`: on the event loop, connections are kept per
    # context, so each request would build a connection object of its own (CPU, and
    # memory held for as long as its answer runs).
    return _vendor(connections.settings[DEFAULT_DB_ALIAS]["ENGINE"]) == "sqlite"


@functools.cache
def _vendor(engine: str) -> str:
    return str(load_backend(engine).DatabaseWrapper.vendor)


def _as_the_writer[**P, R](fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    with _writer:
        return fn(*args, **kwargs)


@contextlib.contextmanager
def bounded_writes() -> Iterator[None]:
    """Around a view's work: its writes wait for their turn at most CHAT_DB_WRITE_WAIT,
    then raise WritesBusy (503). What runs after (the stream it returns, the tasks it
    starts) waits however long."""
    token = _bounded.set(True)
    try:
        yield
    finally:
        _bounded.reset(token)


def _in_request() -> bool:
    """Tell whether this runs in a request that has a thread of its own: Django's thread
    for the request (chat/handler.py), or the sync thread that called the async view
    (Django's test client)."""
    has_caller = getattr(AsyncToSync.executors, "current", None) is not None
    return has_caller or SyncToAsync.thread_sensitive_context.get(None) is not None


@contextlib.asynccontextmanager
async def given_back() -> AsyncIterator[None]:
    """Close, at the end, the connections opened on asgiref's shared thread meanwhile."""
    try:
        yield
    finally:
        await sync_to_async(connections.close_all)()


def serialize_transaction(name: str) -> None:
    """Make the transactions that call this with one name run one at a time, from here on.

    PostgreSQL takes an advisory lock held until the transaction ends; SQLite needs none,
    its IMMEDIATE transactions already run one at a time. Call inside transaction.atomic().
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])
