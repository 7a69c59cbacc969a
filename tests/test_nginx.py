"""
deploy/nginx.conf, run by Debian's nginx in front of two app processes that share Redis
and the database: answers stream through it as they are made, and resume on any worker.
"""

import asyncio
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.asgi_client import Event, parse_events
from tests.fakeopenai import Reply
from tests.servers import NGINX, ROOT, Process, free_port, nginx, serve
from tests.test_multiprocess import Browser, answer, server_env, text_of
from tests.test_multiprocess import browser as multiprocess_browser

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

browser = multiprocess_browser  # alice's logged-in client, a fixture

HEARTBEAT = 0.3  # seconds between the workers' ": ping" comments
READ_TIMEOUT = 1  # nginx's proxy_read_timeout in these tests, in seconds


def require_nginx() -> None:
    """Skip without nginx, or fail in CI, which must run this test."""
    if shutil.which(NGINX):
        return
    reason = f"no nginx at {NGINX} (apt-get install nginx)"
    if os.environ.get("CI"):
        pytest.fail(f"CI needs {reason}")
    pytest.skip(reason)


def replaced(text: str, changes: dict[str, str]) -> str:
    for old, new in changes.items():
        assert text.count(old) == 1, f"deploy/nginx.conf no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


def site_file(port: int, workers: list[int], workdir: Path) -> Path:
    """deploy/nginx.conf with this test's ports and paths, and a read timeout of 1 s."""
    text = replaced(
        (ROOT / "deploy" / "nginx.conf").read_text(),
        {
            "listen 80;": f"listen 127.0.0.1:{port};",
            "server 127.0.0.1:8001;": f"server 127.0.0.1:{workers[0]};",
            "server 127.0.0.1:8002;": f"server 127.0.0.1:{workers[1]};",
            "proxy_read_timeout 60s;": f"proxy_read_timeout {READ_TIMEOUT}s;",
            "alias /srv/chat/staticfiles/;": f"alias {ROOT / 'static'}/;",
            "/var/log/nginx/chat.access.log": str(workdir / "access.log"),
        },
    )
    site = workdir / "chat.conf"
    site.write_text(text)
    return site


@dataclass
class Proxy:
    url: str
    workers: dict[str, Process]  # by host:port, as nginx logs them
    access_log: Path

    def served_by(self, request_id: str) -> str:
        """The worker that served the request with this id, once nginx has logged it."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for line in self.access_log.read_text().splitlines():
                if line.endswith(f" request_id={request_id}"):
                    return line.split(" upstream=")[1].split()[0]
            time.sleep(0.02)
        raise AssertionError(f"nginx logged no request {request_id}")


@pytest.fixture(scope="module")
def nginx_and_workers(django_db_setup, django_db_blocker, fake_openai, tmp_path_factory):
    """nginx on deploy/nginx.conf in front of two production workers, for the module."""
    require_nginx()
    with django_db_blocker.unblock():
        env = {
            **server_env(fake_openai),
            "CHAT_SSE_HEARTBEAT": str(HEARTBEAT),
            # Not what these tests are about: no counter left by another test may refuse.
            "CHAT_RATE_LIMITS": "1000/minute",
            "CHAT_MAX_CONCURRENT": "100",
        }
    port, workers = free_port(), [free_port(), free_port()]
    workdir = tmp_path_factory.mktemp("nginx")
    site = site_file(port, workers, workdir)
    with (
        serve(workers[0], env) as first,
        serve(workers[1], env) as second,
        nginx(site, port, workdir),
    ):
        yield Proxy(
            f"http://127.0.0.1:{port}",
            {f"127.0.0.1:{workers[0]}": first, f"127.0.0.1:{workers[1]}": second},
            workdir / "access.log",
        )


@pytest.fixture
async def proxy(nginx_and_workers, browser):
    """nginx and its two workers, each of which has answered once, directly.

    A worker's first answer loads what later ones reuse and can outlast the 1 s read
    timeout; nginx would then answer 504 and stop sending that worker requests for a while.
    """
    for worker in nginx_and_workers.workers:
        await browser.events(f"http://{worker}", await browser.ask(f"http://{worker}", "warm"))
    return nginx_and_workers


@dataclass
class Read:
    """One stream request's response headers and body chunks, each with its arrival time."""

    headers: httpx2.Headers
    chunks: list[tuple[float, bytes]]

    @property
    def raw(self) -> bytes:
        return b"".join(chunk for _, chunk in self.chunks)

    @property
    def events(self) -> list[Event]:
        return parse_events(self.raw)[0]

    def arrivals(self) -> list[float]:
        """When each event became complete, by the arrival of the chunk that completed it."""
        times, raw = [], b""
        for at, chunk in self.chunks:
            raw += chunk
            times += [at] * (len(parse_events(raw)[0]) - len(times))
        return times


async def read(
    browser: Browser,
    url: str,
    *,
    after: int = 0,
    count: int | None = None,
    headers: dict[str, str] | None = None,
) -> Read:
    """Read a stream through nginx, all of it or until `count` events arrived."""
    headers = {"Last-Event-ID": str(after), **(headers or {})}
    async with browser.client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.status_code
        result = Read(response.headers, [])
        try:
            async for chunk in response.aiter_raw():
                result.chunks.append((time.monotonic(), chunk))
                if count is not None and len(result.events) >= count:
                    break
        except httpx2.RemoteProtocolError:
            pass  # cut off, as by a stopping worker: the caller reconnects, as a browser does
    return result


async def test_deltas_pass_through_nginx_as_the_model_sends_them(proxy, browser, fake_openai):
    fake_openai.reset()
    fake_openai.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(10)], token_delay=0.1))

    generation = await browser.ask(proxy.url, "Hi")
    stream = await read(browser, proxy.url + generation["stream_url"])

    arrivals = zip(stream.arrivals(), stream.events, strict=True)
    deltas = [at for at, event in arrivals if event.event == "delta"]
    assert [e.id for e in stream.events] == list(range(1, 12))
    assert deltas[-1] - deltas[0] >= 0.5  # 9 gaps of 0.1 s: spread out, not one burst
    assert len(set(deltas)) >= 5  # in several reads
    assert text_of(stream.events) == (await answer(generation)).content


async def test_sse_headers_survive_nginx_and_only_other_responses_are_gzipped(proxy, browser):
    generation = await browser.ask(proxy.url, "Hi")
    stream = await read(
        browser,
        proxy.url + generation["stream_url"],
        headers={"Accept-Encoding": "gzip", "X-Request-ID": "through-nginx-1"},
    )
    stylesheet = await browser.client.get(
        f"{proxy.url}/static/css/chat.css", headers={"Accept-Encoding": "gzip"}
    )

    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["cache-control"] == "no-cache, no-transform"
    assert stream.headers["transfer-encoding"] == "chunked"
    assert "content-encoding" not in stream.headers
    assert stream.headers["x-request-id"] == "through-nginx-1"
    assert stream.events[-1].event == "done"
    assert (stylesheet.status_code, stylesheet.headers["content-encoding"]) == (200, "gzip")


async def test_a_reader_reconnecting_through_nginx_resumes_on_either_worker(
    proxy, browser, fake_openai
):
    fake_openai.reset()
    fake_openai.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(30)], token_delay=0.02))
    generation = await browser.ask(proxy.url, "Hi")
    url = proxy.url + generation["stream_url"]

    # Reconnect, three events at a time, until both workers have served a part (nginx
    # alternates between two idle workers, so the second part already does).
    events, workers = [], []
    while set(workers) != set(proxy.workers) and len(workers) < 6:
        request_id = f"{generation['id']}-{len(workers)}"
        after = events[-1].id if events else 0
        part = await read(browser, url, after=after, count=3, headers={"X-Request-ID": request_id})
        events += part.events[:3]
        workers.append(await asyncio.to_thread(proxy.served_by, request_id))
    events += (await read(browser, url, after=events[-1].id)).events

    assert set(workers) == set(proxy.workers)
    assert [e.id for e in events] == list(range(1, 32))
    assert text_of(events) == (await answer(generation)).content


async def test_heartbeats_keep_a_quiet_stream_open_past_nginx_read_timeout(
    proxy, browser, fake_openai
):
    fake_openai.reset()
    fake_openai.reply_to("Hi", Reply(tokens=["at ", "last"], first_token_delay=2.5))

    generation = await browser.ask(proxy.url, "Hi")
    opened = time.monotonic()
    stream = await read(browser, proxy.url + generation["stream_url"])

    assert stream.arrivals()[0] - opened > 2 * READ_TIMEOUT  # silent that long but for pings
    assert parse_events(stream.raw)[1].count("ping") >= 2 * READ_TIMEOUT / HEARTBEAT
    assert stream.events[-1].event == "done"
    assert text_of(stream.events) == "at last" == (await answer(generation)).content


async def test_readyz_answers_the_load_balancer_through_nginx(proxy, browser):
    response = await browser.client.get(f"{proxy.url}/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


# Last in the module: it stops one of the module's two workers for good.
async def test_a_worker_stopped_mid_answer_hands_its_reader_to_the_other(
    proxy, browser, fake_openai
):
    fake_openai.reset()
    words = [f"w{i} " for i in range(200)]  # 6 s: past the stopping worker's 3 s drain
    fake_openai.reply_to("Hi", Reply(tokens=words, token_delay=0.03))
    conversation = await browser.conversation(proxy.url)
    posted = await browser.client.post(
        f"{proxy.url}/api/conversations/{conversation}/messages/",
        json={"content": "Hi"},
        headers={"X-Request-ID": "doomed-post"},
    )
    generation = posted.json()["generation"]
    url = proxy.url + generation["stream_url"]
    events = (await read(browser, url, count=5)).events[:5]
    running_on = await asyncio.to_thread(proxy.served_by, "doomed-post")

    proxy.workers[running_on].send_signal(signal.SIGTERM)  # as systemctl stop does
    # Read on as EventSource does: reconnect with Last-Event-ID whenever the stream is cut.
    served_by = []
    while events[-1].event not in ("done", "error") and len(served_by) < 5:
        request_id = f"after-stop-{len(served_by)}"
        part = await read(browser, url, after=events[-1].id, headers={"X-Request-ID": request_id})
        events += part.events
        served_by.append(await asyncio.to_thread(proxy.served_by, request_id))

    assert served_by[-1] != running_on
    assert [e.id for e in events] == list(range(1, 202))
    assert (events[-1].event, events[-1].data["finish_reason"]) == ("done", "stop")
    assert text_of(events) == (await answer(generation)).content == "".join(words)
