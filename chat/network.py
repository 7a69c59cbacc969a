"""
The SDK's connections to the model, on asyncio's own transports.

httpcore (below httpx and the SDK) reads the network through anyio, which opens a cancel
scope for every read: for an answer streamed a token at a time, that scope cost more CPU
than the rest of the read. This backend reads from a buffer that asyncio's transport
fills as bytes arrive, and arms a timer only when it has to wait.

It hands over every byte it received before it reports an end: a connection the model
cuts mid-answer still yields the tokens that arrived before the cut (httpcore then
reports the broken body, and the answer keeps what it was sent).
"""

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any, cast

import aiohappyeyeballs
import httpcore2
import httpx2

# Reading pauses while this much is received and not yet read; a slow reader holds at
# most about that much of an answer in memory.
HIGH_WATER = 256 * 1024


class _Connection(asyncio.Protocol):
    """The received bytes of one connection, and how it ended."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.ended = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as such.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) > HIGH_WATER and not self.reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    async def received_or_ended(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def writable(self) -> None:
        if self._writable is not None:
            await asyncio.shield(self._writable)

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.received[:max_bytes])
        del self.received[:max_bytes]
        if self.reading_paused and len(self.received) <= HIGH_WATER // 4:
            assert self.transport is not None
            self.transport.resume_reading()
            self.reading_paused = False
        return data

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Stream(httpcore2.AsyncNetworkStream):
    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    @property
    def _transport(self) -> asyncio.Transport:
        assert self._connection.transport is not None
        return self._connection.transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        connection = self._connection
        if not connection.received and not connection.ended:
            try:
                async with asyncio.timeout(timeout):
                    await connection.received_or_ended()
            except TimeoutError:
                raise httpcore2.ReadTimeout("timed out reading from the model") from None
        if connection.received:
            return connection.take(max_bytes)
        if connection.error is not None:
            raise httpcore2.ReadError(str(connection.error)) from connection.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore2.WriteError("the connection to the model is closed")
        self._transport.write(buffer)
        try:
            async with asyncio.timeout(timeout):
                await self._connection.writable()
        except TimeoutError:
            raise httpcore2.WriteTimeout("timed out writing to the model") from None
        if self._connection.error is not None:
            raise httpcore2.WriteError(str(self._connection.error))

    async def aclose(self) -> None:
        # At once: httpcore closes only a connection it is done with, and TLS's polite
        # close waits up to 30 s for a model that is still streaming (uvloop), which would
        # keep a stopped answer's upstream request running.
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            # Past the loop's own handshake limit (60 s), the loop aborts it: ConnectError.
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport,
                    self._connection,
                    ssl_context,
                    server_hostname=server_hostname,
                )
        except TimeoutError as exc:
            self._transport.abort()
            raise httpcore2.ConnectTimeout("timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.abort()
            raise httpcore2.ConnectError(str(exc)) from exc
        self._connection.transport = cast(asyncio.Transport, transport)
        return Stream(self._connection)

    def get_extra_info(self, info: str) -> Any:
        match info:
            case "ssl_object":
                return self._transport.get_extra_info("ssl_object")
            case "client_addr":
                return self._transport.get_extra_info("sockname")
            case "server_addr":
                return self._transport.get_extra_info("peername")
            case "socket":
                return self._transport.get_extra_info("socket")
            case "is_readable":
                # An idle connection the server closed, or sent something on: the bytes
                # are already off the socket, in the buffer.
                return self._connection.ended or bool(self._connection.received)
        return None


class Backend(httpcore2.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                # Happy Eyeballs on any loop (uvloop's create_connection has none): a host
                # whose IPv6 drops packets still connects over IPv4.
                addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                local = None
                if local_address:
                    local = await loop.getaddrinfo(local_address, 0, type=socket.SOCK_STREAM)
                sock = await aiohappyeyeballs.start_connection(
                    addresses, local_addr_infos=local, happy_eyeballs_delay=0.25, interleave=1
                )
                try:
                    _, connection = await loop.create_connection(_Connection, sock=sock)
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except (OSError, RuntimeError) as exc:  # aiohappyeyeballs's, on uvloop: RuntimeError
            raise httpcore2.ConnectError(str(exc)) from exc
        stream = Stream(connection)
        for option in socket_options or ():
            stream.get_extra_info("socket").setsockopt(*option)
        return stream

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def transport(limits: httpx2.Limits) -> httpx2.AsyncHTTPTransport:
    """httpx's transport, its connections made by this backend."""
    made = httpx2.AsyncHTTPTransport(limits=limits)
    # httpx takes no backend; its pool does, and gives it to each connection it opens.
    made._pool._network_backend = Backend()
    return made
