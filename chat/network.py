"""
The SDK's connections to the model: HTTP/1.1 on asyncio's own transports, parsed in C.

A streamed answer is one network read per token. Through httpx's own transport each read
went through httpcore's connection and h11's state machine (Python): a fifth of the
relay's CPU. Here a connection is an asyncio Protocol whose bytes go straight into
httptools' parser (llhttp, uvicorn's); the body's pieces wait in a queue the response's
stream takes them from, and one timer per connection bounds its waits. httpx (above this
transport) and the SDK still do the rest: auth, retries, timeouts' values, status errors.

Every byte received before an end is handed over before the end is reported: a model
that cuts the connection mid-answer still yields the tokens that arrived before the cut,
then RemoteProtocolError (ReadError for a reset), and the answer keeps what it was sent.

Through a proxy named by the environment, httpx's own transport is used instead
(chat/provider.py). Requests are the SDK's: never HEAD, never an upgrade.
"""

import asyncio
import re
import socket
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import aiohappyeyeballs
import httptools
import httpx2

# Reading pauses while this much is received and not yet read; a slow reader holds at
# most about that much of an answer in memory. Each piece counts PIECE_COST more, its
# object's own size: a model sending one-byte chunks is bounded too.
HIGH_WATER = 256 * 1024
PIECE_COST = 64
# A response's status line and headers, its 1xx ones' counted with them (httpcore bounded
# each head at this): past it, the model's response is refused (llhttp sets no limit).
MAX_HEAD = 100 * 1024

# RFC 9110's token: a method's and a header name's characters.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

type Origin = tuple[str, str, int]


class _Exchange:
    """One response as httptools parses it: its status, headers and unread body.

    The body is kept in the pieces it came in (an HTTP chunk, or what one read brought),
    and handed over piece by piece, as h11 did: a model's SSE frame is one chunk, so an
    answer's deltas become events the same way however fast they come.
    """

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: deque[bytes] = deque()
        self.unread = 0
        self.head_size = 0  # interim responses' heads included
        self.headers_complete = False
        self.keep_alive = False
        self.complete = False

    # httptools' callbacks.
    def on_message_begin(self) -> None:
        if self.complete:
            raise httpx2.RemoteProtocolError("the model sent more than its response")

    def on_status(self, reason: bytes) -> None:
        self.reason += reason  # in pieces, if the line came in several reads

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_complete = self.status >= 200
        # Asked now: once the message is complete, llhttp answers no.
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.unread += len(body) + PIECE_COST

    def on_message_complete(self) -> None:
        if self.status < 200:  # an interim response (103 Early Hints ...): the next one counts
            self.headers.clear()
            self.reason = b""
        else:
            self.complete = True

    def http_version(self) -> bytes:
        return b"HTTP/" + self.parser.get_http_version().encode("ascii")

    def ends_at_close(self) -> bool:
        """Tell whether the body is delimited by the connection's close (no length, not chunked)."""
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names


class _Connection(asyncio.Protocol):
    """One connection to the model: what it received for the current response, and how
    it ended."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.exchange: _Exchange | None = None
        self.ended = False
        self.error: BaseException | None = None
        self.idle_since = 0.0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as such.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.exchange is None or self.exchange.complete:
            self.ended = True  # the model spoke out of turn: the connection is not used again
            return
        exchange = self.exchange
        try:
            if not exchange.headers_complete:
                exchange.head_size += len(data)  # with at most one read of the body's start
            exchange.parser.feed_data(data)
            if not exchange.headers_complete and exchange.head_size > MAX_HEAD:
                raise httptools.HttpParserError(f"its head is over {MAX_HEAD} bytes")
        except httptools.HttpParserError as exc:
            self.error = httpx2.RemoteProtocolError(f"the model's response is malformed: {exc}")
            self.abort()
            self._wake()
            return
        if exchange.unread > HIGH_WATER and not self._reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = self.error or exc
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    async def send(self, data: bytes, timeout: float | None) -> None:
        assert self.transport is not None
        if self.ended or self.transport.is_closing():
            raise httpx2.WriteError("the connection to the model is closed")
        self.transport.write(data)
        if self._writable is not None:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._writable)
            except TimeoutError:
                raise httpx2.WriteTimeout("timed out writing to the model") from None
        if self.error is not None:
            raise httpx2.WriteError(str(self.error))

    async def received(self, timeout: float | None) -> None:
        """Wait until more of the response is received, or the connection ends."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        if timeout is not None:
            # One timer per connection, moved on only when it fires: a read at a model's
            # pace (one per token) arms none of its own.
            self._deadline = loop.time() + timeout
            if self._timer is None:
                self._timer = loop.call_at(self._deadline, self._time_out)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # timed out in the same turn: retrieved, not logged
            raise
        finally:
            self._waiter = None

    def _time_out(self) -> None:
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._time_out)
        else:
            self._waiter.set_exception(httpx2.ReadTimeout("timed out reading from the model"))

    def take(self) -> bytes:
        assert self.exchange is not None
        data = self.exchange.body.popleft()
        self.exchange.unread -= len(data) + PIECE_COST
        if self._reading_paused and self.exchange.unread <= HIGH_WATER // 4:
            assert self.transport is not None
            self.transport.resume_reading()
            self._reading_paused = False
        return data

    def cut(self) -> httpx2.TransportError:
        """The error for a connection that ended before its response did."""
        if isinstance(self.error, httpx2.TransportError):
            return self.error
        if self.error is not None:
            return httpx2.ReadError(str(self.error))
        return httpx2.RemoteProtocolError("the model closed the connection mid-response")

    def reusable(self) -> bool:
        exchange = self.exchange
        if exchange is None or self.ended:
            return False
        return exchange.complete and exchange.keep_alive and not exchange.body

    def abort(self) -> None:
        # At once: TLS's polite close waits up to 30 s for a model that is still streaming
        # (uvloop), which would keep a stopped answer's upstream request running.
        self.ended = True
        self.stop_timer()
        if self.transport is not None:
            self.transport.abort()

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Body(httpx2.AsyncByteStream):
    """A response's body as it arrives; its connection goes back to the pool at its end."""

    def __init__(self, pool: "Transport", connection: _Connection, timeout: float | None):
        self._pool = pool
        self._connection: _Connection | None = connection
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        assert connection is not None and connection.exchange is not None
        exchange = connection.exchange
        while True:
            if exchange.body:
                yield connection.take()
            elif exchange.complete:
                break
            elif connection.ended:
                if connection.error is None and exchange.ends_at_close():
                    break
                raise connection.cut()
            else:
                await connection.received(self._timeout)
        self._give_back()

    async def aclose(self) -> None:
        self._give_back()

    def _give_back(self) -> None:
        # Once: given back, the connection may already carry another response.
        if self._connection is not None:
            self._pool.give_back(self._connection)
            self._connection = None


class Transport(httpx2.AsyncBaseTransport):
    """httpx's transport to the model: a pool of keep-alive connections within `limits`."""

    def __init__(self, limits: httpx2.Limits) -> None:
        self._ssl_context = httpx2.create_ssl_context()  # SSL_CERT_FILE ... honoured
        self._max = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._keepalive = limits.keepalive_expiry
        self._slots = asyncio.Semaphore(self._max or 2**31)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._in_use: set[_Connection] = set()
        self._opening = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        head, body = await _serialised(request)
        await self._slot(timeouts.get("pool"))
        try:
            connection = self._reused(origin) or await self._connect(
                origin, timeouts.get("connect")
            )
        except BaseException:
            self._slots.release()
            raise
        self._in_use.add(connection)
        try:
            await self._exchange(
                connection, head + body, timeouts.get("write"), timeouts.get("read")
            )
        except BaseException:
            connection.abort()
            self.give_back(connection)
            raise
        exchange = connection.exchange
        assert exchange is not None
        return httpx2.Response(
            status_code=exchange.status,
            headers=exchange.headers,
            stream=_Body(self, connection, timeouts.get("read")),
            extensions={"http_version": exchange.http_version(), "reason_phrase": exchange.reason},
        )

    def give_back(self, connection: _Connection) -> None:
        """Take the connection back from its response, kept for reuse if it can be."""
        self._in_use.discard(connection)
        self._slots.release()
        if not connection.reusable() or self._max_idle == 0:
            connection.abort()
            return
        connection.exchange = None
        connection.stop_timer()
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.origin, []).append(connection)
        if self._max_idle is not None and self._idle_count() > self._max_idle:
            self._drop_oldest_idle()

    async def aclose(self) -> None:
        for connection in [*self._in_use, *(c for idle in self._idle.values() for c in idle)]:
            connection.abort()
        self._idle.clear()

    async def _slot(self, timeout: float | None) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx2.PoolTimeout("timed out waiting for a connection to the model") from None

    def _reused(self, origin: Origin) -> _Connection | None:
        """Take the newest idle connection to `origin` that is still open; close those
        idle past the keep-alive expiry (to any origin), and those the model closed."""
        if self._keepalive is not None:
            expired = time.monotonic() - self._keepalive
            for kept in self._idle.values():
                while kept and kept[0].idle_since < expired:
                    kept.pop(0).abort()
        idle = self._idle.get(origin, [])
        while idle:
            connection = idle.pop()
            if not connection.ended:
                return connection
            connection.abort()
        return None

    def _idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def _drop_oldest_idle(self) -> None:
        idle = min((idle for idle in self._idle.values() if idle), key=lambda c: c[0].idle_since)
        idle.pop(0).abort()

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        idle = self._idle_count()
        if idle and self._max is not None and idle + len(self._in_use) + self._opening >= self._max:
            self._drop_oldest_idle()  # at most `max` open, idle ones included
        self._opening += 1
        try:
            return await self._open(origin, timeout)
        finally:
            self._opening -= 1

    async def _open(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._ssl_context if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                # Happy Eyeballs on any loop (uvloop's create_connection has none): a host
                # whose IPv6 drops packets still connects over IPv4.
                addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                sock = await aiohappyeyeballs.start_connection(
                    addresses, happy_eyeballs_delay=0.25, interleave=1
                )
                try:
                    # The TLS handshake too is bounded by the connect timeout.
                    _, connection = await loop.create_connection(
                        lambda: _Connection(origin),
                        sock=sock,
                        ssl=tls,
                        server_hostname=host if tls else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError as exc:
            raise httpx2.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except (OSError, RuntimeError) as exc:  # aiohappyeyeballs's, on uvloop: RuntimeError
            raise httpx2.ConnectError(str(exc) or type(exc).__name__) from exc
        return connection

    @staticmethod
    async def _exchange(
        connection: _Connection, data: bytes, write: float | None, read: float | None
    ) -> None:
        """Send the request and wait for its response's headers."""
        connection.exchange = exchange = _Exchange()
        await connection.send(data, write)
        while not exchange.headers_complete:
            if connection.ended:
                raise connection.cut()
            await connection.received(read)


async def _serialised(request: httpx2.Request) -> tuple[bytes, bytes]:
    """Return the request's head and body as they go on the wire."""
    method = request.method.encode("ascii")
    if not _TOKEN.fullmatch(method):
        raise httpx2.LocalProtocolError(f"the method {method!r} is not a token")
    lines = [b"%s %s HTTP/1.1" % (method, request.url.raw_path)]
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name) or any(c in value for c in (b"\r", b"\n", b"\0")):
            raise httpx2.LocalProtocolError(f"the header {name!r} is malformed")
        lines.append(name + b": " + value)
    parts = [part async for part in cast(AsyncIterator[bytes], request.stream)]
    if request.headers.get("transfer-encoding", "").lower() == "chunked":
        parts = [b"%x\r\n%s\r\n" % (len(part), part) for part in parts if part] + [b"0\r\n\r\n"]
    return b"\r\n".join(lines) + b"\r\n\r\n", b"".join(parts)
