"""
The load generator: opens streams against a target (the upstream itself, the Python peer
or the project), reads them incrementally and records what a user would feel, and samples
the servers' CPU and memory while it does.
"""

import asyncio
import codecs
import itertools
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import psutil

from bench.fake_upstream import expected_text, strip_stamps
from bench.servers import MODEL

STAMP = re.compile(r"~(\d+) ")
_NONCE = itertools.count()


@dataclass
class StreamResult:
    """What one stream looked like from the client. Times are seconds since the POST."""

    tokens_asked: int
    accepted: float | None = None  # the POST's answer (202), before the stream is asked for
    ttfb: float | None = None  # the stream response's first byte
    ttft: float | None = None  # the first delta
    total: float | None = None  # the terminal event
    arrivals: list[float] = field(default_factory=list)  # one per delta
    latencies: list[float] = field(default_factory=list)  # upstream send -> client, per token
    pings: list[float] = field(default_factory=list)
    bytes: int = 0
    text: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def text_ok(self) -> bool:
        return strip_stamps("".join(self.text)) == expected_text(self.tokens_asked)

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


class _SSEReader:
    """Splits a byte stream into SSE blocks; one event per block, comments kept."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""

    def feed(self, data: bytes) -> list[list[str]]:
        self._buffer = (self._buffer + self._decoder.decode(data)).replace("\r\n", "\n")
        *blocks, self._buffer = self._buffer.split("\n\n")
        return [block.split("\n") for block in blocks]


def _fields(lines: list[str]) -> tuple[dict[str, str], bool]:
    """The block's fields, and whether it was a ping comment."""
    fields = {}
    ping = False
    for line in lines:
        if line.startswith(":"):
            ping = ping or "ping" in line
        elif ":" in line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return fields, ping


async def _read(response: aiohttp.ClientResponse, result: StreamResult, posted: float) -> None:
    """Read a stream to its end; `direct` upstream chunks and our SSE events alike."""
    if response.status != 200:
        result.error = f"status {response.status}"
        return
    reader = _SSEReader()
    async for data in response.content.iter_any():
        now = time.monotonic()
        if result.ttfb is None:
            result.ttfb = now - posted
        result.bytes += len(data)
        for block in reader.feed(data):
            fields, ping = _fields(block)
            if ping:
                result.pings.append(now - posted)
            if "data" not in fields:
                continue
            content, end = _content(fields)
            if content:
                if result.ttft is None:
                    result.ttft = now - posted
                result.arrivals.append(now - posted)
                result.text.append(content)
                result.latencies += [now - int(s) / 1e6 for s in STAMP.findall(content)]
            if end:
                result.total = now - posted
                if end != "done":
                    result.error = end
                return
    result.error = "stream ended without a terminal event"


def _content(fields: dict[str, str]) -> tuple[str, str | None]:
    """A block's delta text, and how it ends the stream ("done", an error code or None)."""
    data = fields["data"]
    if data == "[DONE]":
        return "", "done"
    event = fields.get("event")
    if event is None:  # an upstream chat.completion.chunk
        choices = json.loads(data)["choices"]
        return (choices[0]["delta"].get("content") or "") if choices else "", None
    if event == "delta":
        return json.loads(data)["content"], None
    if event == "done":
        return "", "done"
    return "", json.loads(data).get("code", event)


class Target(Protocol):
    name: str

    async def stream(
        self, http: aiohttp.ClientSession, index: int, prompt: str, result: StreamResult
    ) -> None:
        """Post a message (or the upstream request), then read its stream into result."""


@dataclass
class Direct:
    """The upstream read directly: the physical limit."""

    base: str
    name: str = "direct"

    async def stream(
        self, http: aiohttp.ClientSession, index: int, prompt: str, result: StreamResult
    ) -> None:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        posted = time.monotonic()
        async with http.post(f"{self.base}/v1/chat/completions", json=body) as response:
            await _read(response, result, posted)


@dataclass
class Peer:
    """The Starlette peer: POST /messages, then GET its stream."""

    base: str
    name: str = "peer"

    async def stream(
        self, http: aiohttp.ClientSession, index: int, prompt: str, result: StreamResult
    ) -> None:
        posted = time.monotonic()
        async with http.post(f"{self.base}/messages", json={"content": prompt}) as response:
            url = (await response.json())["stream_url"]
        result.accepted = time.monotonic() - posted
        async with http.get(f"{self.base}{url}") as response:
            await _read(response, result, posted)


@dataclass
class Slot:
    """A conversation to post into, and its owner's session headers."""

    headers: dict[str, str]
    conversation: str


@dataclass
class Project:
    """The project through its API: POST a message, GET the generation's stream.

    With several servers, message i is posted to server i and read from server i + 1,
    so every stream crosses processes through the event log.
    """

    bases: list[str]
    slots: list[Slot]
    name: str = "project"

    async def stream(
        self, http: aiohttp.ClientSession, index: int, prompt: str, result: StreamResult
    ) -> None:
        slot = self.slots.pop()
        post_to = self.bases[index % len(self.bases)]
        read_from = self.bases[(index + 1) % len(self.bases)]
        posted = time.monotonic()
        async with http.post(
            f"{post_to}/api/conversations/{slot.conversation}/messages/",
            json={"content": prompt},
            headers=slot.headers,
        ) as response:
            if response.status != 202:
                result.error = f"POST {response.status}: {(await response.text())[:200]}"
                return
            url = (await response.json())["generation"]["stream_url"]
        result.accepted = time.monotonic() - posted
        async with http.get(f"{read_from}{url}", headers=slot.headers) as response:
            await _read(response, result, posted)


async def login(base: str, username: str, password: str) -> dict[str, str]:
    """Log in as docs/api.md shows; return the headers that carry the session."""
    jar = aiohttp.CookieJar(unsafe=True)  # unsafe: keep cookies for an IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{base}/accounts/login/") as response:
            await response.read()
        token = {cookie.key: cookie.value for cookie in jar}["csrftoken"]
        form = {"username": username, "password": password, "csrfmiddlewaretoken": token}
        async with http.post(
            f"{base}/accounts/login/",
            data=form,
            headers={"Referer": f"{base}/accounts/login/"},
            allow_redirects=False,
        ) as response:
            if response.status != 302:
                raise RuntimeError(f"login of {username} failed: {response.status}")
        cookies = {cookie.key: cookie.value for cookie in jar}
    return {
        "Cookie": f"sessionid={cookies['sessionid']}; csrftoken={cookies['csrftoken']}",
        "X-CSRFToken": cookies["csrftoken"],
    }


@asynccontextmanager
async def client(limit: float) -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP client for a whole measurement: unlimited connections, no cookie jar."""
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=limit, sock_connect=30),
    ) as http:
        yield http


async def run_stream(
    target: Target, http: aiohttp.ClientSession, index: int, prompt: str, result: StreamResult
) -> None:
    """Run one stream, turning any failure into result.error.

    The prompt gets a unique suffix, so that no cache can answer it instead of the model.
    """
    try:
        await target.stream(http, index, f"{prompt} n={next(_NONCE)}", result)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:200]


@dataclass
class Usage:
    """CPU seconds and memory of the measured processes over a window."""

    cpu: float = 0.0
    wall: float = 0.0
    rss_start: int = 0
    rss_peak: int = 0
    rss_end: int = 0


def _cpu(processes: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


def rss(processes: list[psutil.Process]) -> int:
    return sum(p.memory_info().rss for p in processes)


@asynccontextmanager
async def measured(processes: list[psutil.Process]) -> AsyncIterator[Usage]:
    """Measure the processes' CPU and RSS while the block runs (RSS sampled every 0.25 s)."""
    usage = Usage(rss_start=rss(processes))
    usage.rss_peak = usage.rss_start
    cpu, started = _cpu(processes), time.monotonic()

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.25)
            usage.rss_peak = max(usage.rss_peak, rss(processes))

    sampler = asyncio.create_task(sample())
    try:
        yield usage
    finally:
        sampler.cancel()
        usage.cpu = _cpu(processes) - cpu
        usage.wall = time.monotonic() - started
        usage.rss_end = rss(processes)
        usage.rss_peak = max(usage.rss_peak, usage.rss_end)


async def staggered(
    count: int, spread: float, start: Callable[[int], Awaitable[None]]
) -> list[asyncio.Task[None]]:
    """Start `count` tasks evenly over `spread` seconds; return them running."""
    tasks = []
    began = time.monotonic()
    for index in range(count):
        delay = began + spread * index / count - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(start(index)))
    return tasks


def prompt(tokens: int, rate: float = 0, ttft: float = 0) -> str:
    return f"tokens={tokens} rate={rate:g} ttft={ttft:g}"


def fake_stats(base: str) -> Any:
    """The fake upstream's counters (blocking: called between measurements)."""
    with urllib.request.urlopen(f"{base}/stats", timeout=5) as response:
        return json.load(response)
