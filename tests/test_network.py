"""The SDK's connections to the model (chat/network.py): TLS, a stop, proxies, cut
connections, timeouts, idle connections the model closed, and a slow reader's memory; on
asyncio's loop and on uvloop."""

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx2
import pytest
import trustme

from chat import network, provider
from tests.fakeopenai import FakeOpenAI, Reply
from tests.test_provider import answer, failure, model_at
from tests.waiting import until

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request) -> tuple[str, dict]:
    """asyncio's own loop (the tests', runserver's) and uvloop (uvicorn's, in production)."""
    return ("asyncio", {"use_uvloop": request.param == "uvloop"})


@pytest.fixture(autouse=True)
async def clients_closed() -> AsyncIterator[None]:
    """Close the connections the test's SDK clients keep, before its event loop ends."""
    yield
    await provider.close_clients()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_model(ca, settings) -> Iterator[FakeOpenAI]:
    """A model served over HTTPS, its certificate signed by `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with FakeOpenAI(context) as fake:
        model_at(settings, fake.base_url)
        yield fake


@pytest.fixture
def trusting(ca, tmp_path, monkeypatch) -> None:
    """Trust `ca` as SSL_CERT_FILE makes the SDK trust a private CA."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))


async def serving(handle: Handler) -> tuple[asyncio.Server, int]:
    async def handled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handled, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_an_answer_streams_from_a_model_served_over_tls(tls_model, trusting):
    tls_model.reply_to("Hi", Reply(tokens=["Hel", "lo"], token_delay=0.01))

    deltas, finish = await answer()

    assert "".join(deltas) == "Hello"
    assert finish.reason == "stop"


async def test_a_model_whose_certificate_is_not_trusted_is_unreachable(tls_model):
    tls_model.reply_to("Hi", Reply(tokens=["never"]))

    deltas, error = await failure()

    assert deltas == []
    assert error.code == "upstream_unreachable"
    assert tls_model.requests == []


async def test_a_proxy_named_by_the_environment_carries_the_request(
    fake_openai, settings, monkeypatch
):
    fake_openai.reset()
    monkeypatch.setenv("HTTP_PROXY", fake_openai.base_url.removesuffix("/v1"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    model_at(settings, "http://model.invalid/v1")  # reachable only through the proxy
    fake_openai.reply_to("Hi", Reply(tokens=["via ", "proxy"]))

    deltas, _ = await answer()

    assert "".join(deltas) == "via proxy"
    assert fake_openai.requests[0]["path"] == "http://model.invalid/v1/chat/completions"


async def test_the_sdk_connects_through_this_transport_unless_a_proxy_is_named(monkeypatch):
    for name in [name for name in os.environ if name.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "internal.example")  # names no proxy
    monkeypatch.setenv("FTP_PROXY", "http://proxy.example:3128")  # not for httpx

    def transport() -> object:
        return provider._http_client()._transport

    assert isinstance(transport(), network.Transport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not isinstance(transport(), network.Transport)
    monkeypatch.setenv("NO_PROXY", "*")  # no proxy for any host
    assert isinstance(transport(), network.Transport)


async def test_stopping_an_answer_over_tls_closes_its_connection_at_once(ca, trusting):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    cut = threading.Event()

    def stream_forever() -> None:
        # A model that only writes: it learns of the stop when its writes fail.
        connection, _ = listener.accept()
        with context.wrap_socket(connection, server_side=True) as tls:
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(1000):
                    tls.sendall(b"6\r\ntoken \r\n")
                    time.sleep(0.01)
            except OSError:
                cut.set()

    model = threading.Thread(target=stream_forever, daemon=True)
    model.start()
    port = listener.getsockname()[1]
    async with httpx2.AsyncClient(transport=network.Transport(httpx2.Limits())) as client:
        async with client.stream("GET", f"https://127.0.0.1:{port}/") as response:
            async for _ in response.aiter_bytes():
                break  # the user stops the answer
        await until(cut.is_set)
    listener.close()


def cut(writer: asyncio.StreamWriter) -> None:
    """Reset the connection (RST), not a clean close."""
    linger = struct.pack("ii", 1, 0)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    writer.transport.abort()


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Client:
    """An httpx client on this transport, and the URL of the test's server."""

    http: httpx2.AsyncClient
    transport: network.Transport
    url: str
    accepted: list[asyncio.StreamWriter]

    @property
    def connections(self) -> int:
        """How many connections the test's server has accepted."""
        return len(self.accepted)

    def connection(self) -> network._Connection:
        (connection,) = self.transport._in_use
        return connection


@asynccontextmanager
async def client_of(handle: Handler, limits: httpx2.Limits | None = None) -> AsyncIterator[Client]:
    accepted: list[asyncio.StreamWriter] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await handle(reader, writer)

    server, port = await serving(counted)
    transport = network.Transport(limits or httpx2.Limits())
    async with server, httpx2.AsyncClient(transport=transport) as client:
        yield Client(client, transport, f"http://127.0.0.1:{port}/", accepted)


@asynccontextmanager
async def response_of(handle: Handler, **options) -> AsyncIterator[tuple[Client, httpx2.Response]]:
    """A GET's response from the test's server, its body not read yet."""
    async with (
        client_of(handle) as client,
        client.http.stream("GET", client.url, **options) as response,
    ):
        yield client, response


async def assert_each_request_gets_a_new_connection(handle: Handler) -> None:
    """Two requests in turn, the second once the first's connection is known to be over:
    both answered, on two connections."""
    async with client_of(handle) as client:
        first = await client.http.get(client.url)
        await until(lambda: all(c.ended for idle in client.transport._idle.values() for c in idle))
        second = await client.http.get(client.url)

    assert (first.text, second.text) == ("ok", "ok")
    assert client.connections == 2


async def test_the_bytes_before_a_cut_are_read_before_the_error():
    async def send_then_reset(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(CHUNKED + b"e\r\nthe last words\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        cut(writer)

    async with response_of(send_then_reset) as (client, response):
        await until(lambda: client.connection().ended)  # the cut came, after the words
        received = []
        with pytest.raises(httpx2.ReadError):
            async for data in response.aiter_raw():
                received.append(data)

    assert received == [b"the last words"]


async def test_a_body_closed_before_its_end_is_a_protocol_error_after_its_bytes():
    async def close_mid_body(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome words")
        await writer.drain()
        writer.close()

    async with response_of(close_mid_body) as (client, response):
        await until(lambda: client.connection().ended)  # the close came, after the words
        received = []
        with pytest.raises(httpx2.RemoteProtocolError):
            async for data in response.aiter_raw():
                received.append(data)

    assert b"".join(received) == b"some words"


async def test_a_body_that_ends_with_its_connection_is_read_whole():
    async def close_delimited(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with response_of(close_delimited) as (client, response):
        await until(lambda: client.connection().ended)
        assert await response.aread() == b"all of it"


async def test_a_malformed_response_is_a_protocol_error():
    async def garbage(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async with client_of(garbage) as client:
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.http.get(client.url)


async def test_a_response_followed_by_another_is_not_used_again():
    async def two_answers_to_one_request(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK + OK.replace(b"ok", b"no"))
        await reader.read()

    await assert_each_request_gets_a_new_connection(two_answers_to_one_request)


async def test_a_response_head_past_its_bound_is_refused():
    async def endless_header(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
        for _ in range(64):  # 4 MB in all, never ended
            writer.write(b"x" * 64 * 1024)
            await writer.drain()
        await reader.read()

    async def endless_interim_responses(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        for _ in range(10_000):  # each complete, 300 KB in all
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        await writer.drain()
        await reader.read()

    for handle in (endless_header, endless_interim_responses):
        async with client_of(handle) as client:
            with pytest.raises(httpx2.RemoteProtocolError, match="head is over"):
                await client.http.get(client.url)


async def test_a_response_without_a_body_leaves_its_connection_for_the_next():
    async def no_content(reader, writer):
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async with client_of(no_content) as client:
        responses = [await client.http.get(client.url) for _ in range(2)]

    assert [(r.status_code, r.content) for r in responses] == [(204, b"")] * 2
    assert client.connections == 1


async def test_a_connection_the_model_wrote_on_after_its_response_is_not_used_again():
    async def ok_then_more(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\n")  # nobody asked
        await reader.read()

    await assert_each_request_gets_a_new_connection(ok_then_more)


async def test_the_response_tells_its_version_and_reason():
    async def old_server(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 Fine Thanks\r\nContent-Length: 2\r\n\r\nok")

    async with client_of(old_server) as client:
        response = await client.http.get(client.url)

    assert (response.http_version, response.reason_phrase) == ("HTTP/1.0", "Fine Thanks")


async def test_an_interim_response_is_passed_over():
    async def early_hints(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok")
        await writer.drain()

    async with client_of(early_hints) as client:
        response = await client.http.get(client.url)

    assert (response.status_code, response.text) == (200, "ok")
    assert "link" not in response.headers and response.headers["x-final"] == "yes"


async def test_a_read_that_waits_past_its_timeout_is_a_read_timeout():
    async def headers_then_silence(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(CHUNKED)
        await reader.read()  # until the client gives up
        writer.close()

    async with response_of(headers_then_silence, timeout=0.05) as (_, response):
        with pytest.raises(httpx2.ReadTimeout):
            await response.aread()


async def test_a_model_that_never_answers_is_a_read_timeout():
    async def silent(reader, writer):
        await reader.read()
        writer.close()

    async with client_of(silent) as client:
        with pytest.raises(httpx2.ReadTimeout):
            await client.http.get(client.url, timeout=0.05)


async def test_a_model_that_keeps_sending_within_the_read_timeout_is_not_timed_out():
    async def steady(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(CHUNKED)
        for _ in range(8):  # 0.24 s in all, each piece 0.03 s after the last
            await asyncio.sleep(0.03)
            writer.write(b"1\r\nx\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with client_of(steady) as client:
        response = await client.http.get(client.url, timeout=0.1)

    assert response.text == "x" * 8


async def test_a_kept_connection_times_out_by_its_new_requests_timeout():
    async def answer_then_hang(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # never answers the second

    async with client_of(answer_then_hang) as client:
        await client.http.get(client.url, timeout=60)
        with pytest.raises(httpx2.ReadTimeout):
            await asyncio.wait_for(client.http.get(client.url, timeout=0.05), 5)


async def test_requests_past_the_connection_limit_wait_for_one_or_time_out():
    answered = []

    async def keep_alive(reader, writer):
        while request := await reader.readuntil(b"\r\n\r\n"):
            answered.append(request)
            writer.write(OK)
            await writer.drain()

    async with client_of(keep_alive, httpx2.Limits(max_connections=1)) as client:
        async with client.http.stream("GET", client.url) as held:
            with pytest.raises(httpx2.PoolTimeout):
                await client.http.get(client.url, timeout=httpx2.Timeout(1, pool=0.05))
            waiting = asyncio.create_task(client.http.get(client.url))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await held.aread()
        assert (await waiting).text == "ok"

    assert len(answered) == 2  # the timed-out request never went out


async def test_a_stopped_request_gives_back_its_connection_slot():
    connections = 0

    async def silent_first(reader, writer):
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        if connections == 1:
            await reader.read()  # the first request waits until it is stopped
        writer.write(OK)

    async with client_of(silent_first, httpx2.Limits(max_connections=1)) as client:
        stopped = asyncio.create_task(client.http.get(client.url))
        await until(lambda: connections == 1)
        stopped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopped
        answered = await client.http.get(client.url, timeout=httpx2.Timeout(5, pool=1))

    assert answered.text == "ok"
    assert not client.transport._in_use


async def test_idle_connections_are_kept_within_their_number_and_time():
    async def keep_alive(reader, writer):
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(OK)

    limits = httpx2.Limits(max_keepalive_connections=1, keepalive_expiry=0.2)
    async with client_of(keep_alive, limits) as client:
        await asyncio.gather(client.http.get(client.url), client.http.get(client.url))
        assert (client.connections, client.transport._idle_count()) == (2, 1)
        await client.http.get(client.url)
        assert client.connections == 2  # the one kept
        await asyncio.sleep(0.3)
        await client.http.get(client.url)

    assert client.connections == 3  # past its expiry, the kept one was closed


async def test_the_connection_limit_counts_idle_connections_and_those_opening():
    first_closed = asyncio.Event()

    async def first(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await reader.read()  # until the client closes its idle connection
        first_closed.set()

    async def second(reader, writer):
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(OK)

    (server, port), (other, other_port) = await serving(first), await serving(second)
    transport = network.Transport(httpx2.Limits(max_connections=2))
    async with server, other, httpx2.AsyncClient(transport=transport) as http:
        await http.get(f"http://127.0.0.1:{port}/")  # kept idle
        other_url = f"http://127.0.0.1:{other_port}/"
        await asyncio.gather(http.get(other_url), http.get(other_url))  # opened at once
        await asyncio.wait_for(first_closed.wait(), 5)  # to stay within two


async def test_a_body_of_unknown_length_is_sent_chunked():
    received = []

    async def echo_length(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        received.append(head + await reader.readuntil(b"0\r\n\r\n"))
        writer.write(OK)

    async def parts() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b""
        yield b"world"

    async with client_of(echo_length) as client:
        await client.http.post(client.url, content=parts())

    head, body = received[0].split(b"\r\n\r\n", 1)
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert body == b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"


async def test_a_header_or_method_that_would_break_the_request_is_refused():
    async with client_of(lambda reader, writer: reader.read()) as client:
        for headers in ({"X-Bad": "a\r\nInjected: yes"}, {"Bad Name": "b"}):
            with pytest.raises(httpx2.LocalProtocolError):
                await client.http.get(client.url, headers=headers)
        with pytest.raises(httpx2.LocalProtocolError):
            await client.http.request("GET / HTTP/1.1\r\nX:", client.url)

    assert client.connections == 0  # nothing was sent


async def test_a_request_the_model_does_not_read_is_a_write_timeout():
    async def never_reads(reader, writer):
        await asyncio.sleep(1)

    async with client_of(never_reads) as client:
        with pytest.raises(httpx2.WriteTimeout):
            await client.http.post(client.url, content=b"x" * 64 * 1024 * 1024, timeout=0.1)


async def test_a_connection_is_kept_for_the_next_request():
    async def keep_alive(reader, writer):
        while await reader.readuntil(b"\r\n\r\n"):
            await reader.readexactly(4)  # the body
            writer.write(CHUNKED + b"2\r\nok\r\n0\r\n\r\n")
            await writer.drain()

    async with client_of(keep_alive) as client:
        texts = [(await client.http.post(client.url, content=b"body")).text for _ in range(3)]

    assert texts == ["ok"] * 3
    assert client.connections == 1


async def test_a_model_that_does_not_accept_is_a_connect_timeout():
    # A backlog of 0, filled: the kernel drops the next connection's SYN, so it waits.
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    waiting = [socket.socket() for _ in range(3)]
    for sock in waiting:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
    try:
        async with httpx2.AsyncClient(transport=network.Transport(httpx2.Limits())) as client:
            with pytest.raises(httpx2.ConnectTimeout):
                await client.get(
                    f"http://127.0.0.1:{port}/", timeout=httpx2.Timeout(5, connect=0.1)
                )
    finally:
        listener.close()
        for sock in waiting:
            sock.close()


async def test_a_tls_handshake_that_never_ends_is_a_connect_timeout():
    async def silent(reader, writer):
        await reader.read()  # accepts, and never speaks TLS

    server, port = await serving(silent)
    async with server, httpx2.AsyncClient(transport=network.Transport(httpx2.Limits())) as client:
        with pytest.raises(httpx2.ConnectTimeout):
            await client.get(f"https://127.0.0.1:{port}/", timeout=httpx2.Timeout(5, connect=0.1))


async def test_a_model_that_stops_answering_mid_answer_times_out(fake_openai, settings):
    fake_openai.reset()
    model_at(settings, fake_openai.base_url)
    settings.CHAT_UPSTREAM_READ_TIMEOUT = 0.2
    fake_openai.reply_to("Hi", Reply(tokens=["so far"], hang=True))

    deltas, error = await failure()

    assert deltas == ["so far"]
    assert error.code == "upstream_timeout"


async def test_an_idle_connection_the_model_closed_is_not_used_again():
    async def answer_once_then_close(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        writer.close()  # after a keep-alive response: the client learns of it only later

    await assert_each_request_gets_a_new_connection(answer_once_then_close)


async def test_a_slow_reader_holds_a_bounded_part_of_a_fast_answer():
    body = b"x" * (8 * network.HIGH_WATER)

    async def flood(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async with response_of(flood) as (client, response):
        exchange = client.connection().exchange
        received = b""
        held = []
        async for data in response.aiter_raw():
            received += data
            held.append(exchange.unread)
            await asyncio.sleep(0.001)

    assert received == body
    assert max(held) <= network.HIGH_WATER + 256 * 1024  # the bound, and one read's worth


async def test_an_unreachable_model_is_a_connection_error(settings):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    model_at(settings, f"http://127.0.0.1:{port}/v1")

    deltas, error = await failure()

    assert deltas == []
    assert error.code == "upstream_unreachable"
