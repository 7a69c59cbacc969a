"""The SDK's connections to the model (chat/network.py): TLS, a stop, proxies, cut
connections, timeouts, idle connections the model closed, and a slow reader's memory; on
asyncio's loop and on uvloop."""

import asyncio
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpcore2
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
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
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


async def test_the_sdk_connects_through_this_backend_unless_a_proxy_is_named(monkeypatch):
    for name in [name for name in os.environ if name.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "internal.example")  # names no proxy
    monkeypatch.setenv("FTP_PROXY", "http://proxy.example:3128")  # not for httpx

    def backend() -> object:
        return provider._http_client()._transport._pool._network_backend

    assert isinstance(backend(), network.Backend)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not isinstance(backend(), network.Backend)
    monkeypatch.setenv("NO_PROXY", "*")  # no proxy for any host
    assert isinstance(backend(), network.Backend)


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
    async with httpx2.AsyncClient(transport=network.transport(httpx2.Limits())) as client:
        async with client.stream("GET", f"https://127.0.0.1:{port}/") as response:
            async for _ in response.aiter_bytes():
                break  # the user stops the answer
        await until(cut.is_set)
    listener.close()


async def test_the_bytes_before_a_cut_are_read_before_the_error():
    async def send_then_reset(reader, writer):
        writer.write(b"the last words")
        await writer.drain()
        await asyncio.sleep(0.05)
        # A reset, not a clean close: the connection is cut.
        linger = struct.pack("ii", 1, 0)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        writer.transport.abort()

    server, port = await serving(send_then_reset)
    async with server:
        stream = await network.Backend().connect_tcp("127.0.0.1", port)
        await until(lambda: stream._connection.ended)  # the cut has come, after the words

        assert await stream.read(4096, timeout=1) == b"the last words"
        with pytest.raises(httpcore2.ReadError):
            await stream.read(4096, timeout=1)
        await stream.aclose()


async def test_a_read_that_waits_past_its_timeout_is_a_read_timeout():
    async def silent(reader, writer):
        await reader.read()  # until the client gives up
        writer.close()

    server, port = await serving(silent)
    async with server:
        stream = await network.Backend().connect_tcp("127.0.0.1", port)
        with pytest.raises(httpcore2.ReadTimeout):
            await stream.read(4096, timeout=0.05)
        await stream.aclose()


async def test_a_model_that_stops_answering_mid_answer_times_out(fake_openai, settings):
    fake_openai.reset()
    model_at(settings, fake_openai.base_url)
    settings.CHAT_UPSTREAM_READ_TIMEOUT = 0.2
    fake_openai.reply_to("Hi", Reply(tokens=["so far"], hang=True))

    deltas, error = await failure()

    assert deltas == ["so far"]
    assert error.code == "upstream_timeout"


async def test_an_idle_connection_the_model_closed_is_not_used_again():
    connections = 0

    async def answer_once_then_close(reader, writer):
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # after a keep-alive response: the client learns of it only later

    server, port = await serving(answer_once_then_close)
    async with server, httpx2.AsyncClient(transport=network.transport(httpx2.Limits())) as client:
        first = await client.get(f"http://127.0.0.1:{port}/")
        await asyncio.sleep(0.05)
        second = await client.get(f"http://127.0.0.1:{port}/")

    assert (first.text, second.text) == ("ok", "ok")
    assert connections == 2


async def test_a_slow_reader_holds_a_bounded_part_of_a_fast_answer():
    body = b"x" * (8 * network.HIGH_WATER)

    async def flood(reader, writer):
        writer.write(body)
        await writer.drain()
        writer.close()

    server, port = await serving(flood)
    async with server:
        stream = await network.Backend().connect_tcp("127.0.0.1", port)
        received = b""
        held = []
        while chunk := await stream.read(16 * 1024, timeout=1):
            received += chunk
            held.append(len(stream._connection.received))
            await asyncio.sleep(0.001)
        await stream.aclose()

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
