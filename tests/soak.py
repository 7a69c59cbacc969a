"""
The soak engine (issue 8): many concurrent streams against two real server processes,
readers leaving and coming back (to either process), cancels and upstream faults; then
the invariants, and the figures docs/reliability.md quotes.

tests/test_soak.py runs it at CI size, `make soak` at full size; SOAK_* environment
variables override the size (Size.from_env). Loopback only; it stops by itself.

Every stream is planned by a random generator seeded with the run's seed and the
stream's number, so a failing stream's plan can be told from the printed seed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from asgiref.sync import sync_to_async
from django.db import connection

from chat.models import Generation
from tests.asgi_client import CSRF_TOKEN, Event, parse_events
from tests.fakeopenai import Reply, echo_reply

# Between the quiet checkpoint after the warm-up and the quiet end: what a server process
# may gain before the soak calls it a leak. Allocator arenas settle during the warm-up,
# which runs at full concurrency too; the idle connections kept by the upstream and Redis
# pools follow each phase's peak, so quiet descriptor counts differ by up to ~30 at CI
# size. A descriptor leaked per stream or per reconnect is hundreds.
MAX_RSS_GROWTH_KB = 40_000
MAX_FD_GROWTH = 40
MAX_THREAD_GROWTH = 4
SETTLE_SECONDS = 15.0  # after the load: time for every answer to be stored as ended
# What makes a token: every one differs, so a repeated or lost delta changes the text.
SUFFIXES = [" ", "é ", "日本 ", "🎉 ", "\n", ", "]


@dataclass(frozen=True)
class Size:
    concurrency: int  # streams open at once
    users: int
    warmup: float  # seconds of load before the first checkpoint
    duration: float  # seconds of load after it
    seed: int

    @classmethod
    def from_env(cls, concurrency: int, users: int, warmup: float, duration: float) -> Size:
        env = os.environ.get
        return cls(
            concurrency=int(env("SOAK_CONCURRENCY", concurrency)),
            users=int(env("SOAK_USERS", users)),
            warmup=float(env("SOAK_WARMUP", warmup)),
            duration=float(env("SOAK_DURATION", duration)),
            seed=int(env("SOAK_SEED", random.randrange(1_000_000))),
        )


@dataclass(frozen=True)
class Plan:
    """One stream: what the upstream answers, and what its reader does."""

    prompt: str
    tokens: list[str]
    token_delay: float
    fault: str | None  # "status_500" (before any token) or "drop" (mid-answer)
    drop_after: int
    cancel_after: float | None  # seconds after the post
    reads: list[int]  # events read on each connection before leaving; then to the end

    def reply(self) -> Reply:
        return Reply(
            tokens=self.tokens,
            token_delay=self.token_delay,
            status=500 if self.fault == "status_500" else 200,
            drop_after=self.drop_after if self.fault == "drop" else None,
        )

    def expected(self) -> tuple[str, str, str]:
        """The terminal event, its reason or code, and the text, when nobody cancels."""
        if self.fault == "status_500":
            return "error", "upstream_unavailable", ""
        if self.fault == "drop":
            return "error", "upstream_unreachable", "".join(self.tokens[: self.drop_after])
        return "done", "stop", "".join(self.tokens)


def plan(seed: int, index: int) -> Plan:
    rng = random.Random(f"{seed}:{index}")
    length = rng.randint(2, 80)
    fault = rng.choices([None, "status_500", "drop"], weights=[94, 3, 3])[0]
    return Plan(
        prompt=f"soak {seed} {index}",
        tokens=[f"w{i}{rng.choice(SUFFIXES)}" for i in range(length)],
        token_delay=rng.uniform(0.005, 0.04),
        fault=fault,
        drop_after=rng.randint(1, length - 1),
        cancel_after=rng.uniform(0, 1.5) if rng.random() < 0.1 else None,
        reads=[rng.randint(1, 30) for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))],
    )


@dataclass
class Streamed:
    """What one stream's reader saw."""

    plan: Plan
    generation: str
    events: list[Event]
    cancelled: bool


@dataclass
class Tally:
    streams: int = 0
    reconnects: int = 0
    cancels: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # requests that went wrong
    streamed: list[Streamed] = field(default_factory=list)


class StreamRefused(Exception):
    pass


def user_client(session: str) -> httpx2.AsyncClient:
    """A logged-in user's client. Its idle connections expire before uvicorn's keep-alive
    timeout (5 s) would close them: at 5 s each, a request sent on a connection the server
    is closing that instant is reset, which is the client's race, not the server's fault."""
    return httpx2.AsyncClient(
        cookies={"sessionid": session, "csrftoken": CSRF_TOKEN},
        headers={"X-CSRFToken": CSRF_TOKEN},
        timeout=10,
        limits=httpx2.Limits(keepalive_expiry=1),
    )


async def read(client, url: str, after: int, limit: int | None) -> list[Event]:
    """Read a stream from event `after` on: `limit` events then leave, or to its end."""
    events: list[Event] = []
    buffer = b""
    async with client.stream("GET", url, headers={"Last-Event-ID": str(after)}) as response:
        if response.status_code != 200:
            raise StreamRefused(f"GET {url} after {after}: {response.status_code}")
        async for chunk in response.aiter_bytes():
            # Parse complete events only: a long answer is not parsed again per chunk.
            *blocks, buffer = (buffer + chunk).split(b"\n\n")
            events += parse_events(b"".join(block + b"\n\n" for block in blocks))[0]
            if limit is not None and len(events) >= limit:
                return events[:limit]
    return events


async def one_stream(
    client: httpx2.AsyncClient, servers: list[str], plan: Plan, tally: Tally
) -> None:
    rng = random.Random(plan.prompt)  # picks the processes: a reconnect may switch
    server = rng.choice(servers)
    # A titled conversation: no title request upstream, one request per stream.
    created = await client.post(f"{server}/api/conversations/", json={"title": plan.prompt})
    posted = await client.post(
        f"{server}/api/conversations/{created.json()['id']}/messages/",
        json={"content": plan.prompt},
    )
    if posted.status_code != 202:
        raise StreamRefused(f"POST message: {posted.status_code} {posted.text}")
    generation = posted.json()["generation"]
    tally.faults[plan.fault or "none"] += 1
    cancel = None
    if plan.cancel_after is not None:
        cancel = asyncio.create_task(cancel_later(client, rng.choice(servers), generation, plan))
        tally.cancels += 1
    events: list[Event] = []
    for connection_no, limit in enumerate([*plan.reads, None]):
        tally.reconnects += bool(connection_no)
        after = events[-1].id if events else 0
        url = f"{rng.choice(servers)}{generation['stream_url']}"
        events += await read(client, url, after, limit)
        if events and events[-1].event in ("done", "error"):
            break
        await asyncio.sleep(rng.uniform(0, 0.3))
    if cancel is not None:
        await cancel
    tally.streamed.append(Streamed(plan, generation["id"], events, cancel is not None))


async def cancel_later(client, server: str, generation: dict, plan: Plan) -> None:
    await asyncio.sleep(plan.cancel_after or 0)
    response = await client.post(f"{server}{generation['cancel_url']}")
    if response.status_code != 202:
        raise StreamRefused(f"cancel: {response.status_code}")


async def load(
    size: Size,
    clients: list[httpx2.AsyncClient],
    servers: list[str],
    numbers,
    tally: Tally,
    seconds: float,
) -> None:
    """Keep size.concurrency streams open for `seconds`, each lane starting the next."""
    deadline = time.monotonic() + seconds

    async def lane(lane_no: int) -> None:
        client = clients[lane_no % len(clients)]
        while time.monotonic() < deadline:
            stream_plan = plan(size.seed, next(numbers))
            tally.streams += 1
            try:
                await one_stream(client, servers, stream_plan, tally)
            except Exception as exc:  # recorded, and the soak goes on: it fails at the end
                tally.failures.append(f"{stream_plan.prompt}: {exc!r}{request_of(exc)}")
                # An overloaded server refusing at once must not turn the lane into a storm.
                await asyncio.sleep(1)

    await asyncio.gather(*(lane(n) for n in range(size.concurrency)))


def request_of(exc: Exception) -> str:
    """The HTTP request an httpx2 error happened in, if it has one."""
    try:
        request = exc.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return ""
    return f" in {request.method} {request.url}"


def process_figures(pid: int) -> dict[str, int]:
    """A process's resident memory (kB), open file descriptors and threads, from /proc."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {
        "rss_kb": int(status["VmRSS"].split()[0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
    }


def database_connections() -> int | None:
    """Connections to the database other than this one (PostgreSQL); None on SQLite."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


async def checkpoint(pids: list[int]) -> dict[str, Any]:
    return {
        "processes": [process_figures(pid) for pid in pids],
        "database_connections": await sync_to_async(database_connections)(),
    }


async def settle() -> int:
    """Wait until no generation is running, or SETTLE_SECONDS; return how many still are."""
    for _ in range(int(SETTLE_SECONDS / 0.2)):
        if not (running := await Generation.objects.filter(last_event_id=None).acount()):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)  # what follows an answer's end: usage, slot, log expiry
    return running


def mismatches(streamed: Streamed, stored: dict[str, tuple[int | None, str]]) -> list[str]:
    """What is wrong with one stream: its events, the stored answer, the planned outcome."""
    events, plan = streamed.events, streamed.plan
    text = "".join(e.data["content"] for e in events if e.event == "delta")
    last_event_id, content = stored.get(streamed.generation, (None, None))
    problems = []
    if [e.id for e in events] != list(range(1, len(events) + 1)):
        problems.append(f"ids not contiguous from 1: {[e.id for e in events]}")
    if not events or events[-1].event not in ("done", "error"):
        return [f"{plan.prompt} ({streamed.generation}): no terminal event", *problems]
    terminal = events[-1]
    if any(e.event != "delta" for e in events[:-1]):
        problems.append("an event other than a delta before the terminal one")
    if last_event_id != terminal.id:
        problems.append(f"stored last_event_id {last_event_id}, terminal id {terminal.id}")
    if content != text:
        problems.append(f"stored {content!r} != streamed {text!r}")
    outcome = (terminal.event, terminal.data.get("finish_reason") or terminal.data.get("code"))
    expected_event, expected_reason, expected_text = plan.expected()
    if (*outcome, text) != (expected_event, expected_reason, expected_text) and not (
        streamed.cancelled and outcome == ("done", "cancelled") and expected_text.startswith(text)
    ):
        problems.append(f"ended {outcome} with {text!r}, planned {plan.expected()}")
    return [f"{plan.prompt} ({streamed.generation}): {problem}" for problem in problems]


async def stored_answers() -> dict[str, tuple[int | None, str]]:
    rows = Generation.objects.values_list("pk", "last_event_id", "message__content")
    return {str(pk): (last, content) async for pk, last, content in rows}


async def run(
    size: Size, servers: list[str], pids: list[int], sessions: list[str], fake
) -> dict[str, Any]:
    """Soak the servers; return the report (figures and every problem found)."""
    fake.reset()
    fake.default = lambda prompt: (
        plan(size.seed, int(prompt.split()[2])).reply()
        if prompt.startswith(f"soak {size.seed} ")
        else echo_reply(prompt)
    )
    # A line per request of the load itself would cost more than the rest of the client.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    clients = [user_client(session) for session in sessions]
    numbers = itertools.count()
    tally = Tally()
    started = time.monotonic()
    try:
        await load(size, clients, servers, numbers, tally, size.warmup)
        warm_running = await settle()
        warm = await checkpoint(pids)
        await load(size, clients, servers, numbers, tally, size.duration)
    finally:
        for client in clients:
            await client.aclose()
        logging.getLogger("httpx2").setLevel(logging.NOTSET)
    running = await settle()
    end = await checkpoint(pids)
    stored = await stored_answers()
    problems = [p for s in tally.streamed for p in mismatches(s, stored)]
    return {
        "size": asdict(size),
        "seconds": round(time.monotonic() - started, 1),
        "streams": tally.streams,
        "reconnects": tally.reconnects,
        "cancels": tally.cancels,
        "faults_injected": {k: v for k, v in tally.faults.items() if k != "none"},
        "upstream_requests": len(fake.requests),
        "failures": tally.failures,
        "mismatches": problems,
        "running_after_warmup": warm_running,
        "running_at_end": running,
        "warm": warm,
        "end": end,
    }


def growth_problems(report: dict[str, Any]) -> list[str]:
    """What grew past its bound between the warm checkpoint and the end."""
    problems = []
    for n, (warm, end) in enumerate(
        zip(report["warm"]["processes"], report["end"]["processes"], strict=True)
    ):
        for name, bound in (
            ("rss_kb", MAX_RSS_GROWTH_KB),
            ("fds", MAX_FD_GROWTH),
            ("threads", MAX_THREAD_GROWTH),
        ):
            if end[name] - warm[name] > bound:
                problems.append(f"process {n}: {name} {warm[name]} -> {end[name]} (> +{bound})")
    warm_db, end_db = report["warm"]["database_connections"], report["end"]["database_connections"]
    if warm_db is not None and end_db > warm_db:
        problems.append(f"database connections {warm_db} -> {end_db}")
    return problems


def summary(report: dict[str, Any]) -> str:
    faults = sum(report["faults_injected"].values())
    return (
        f"soak seed={report['size']['seed']}: {report['streams']} streams, "
        f"{report['size']['concurrency']} at once, {report['reconnects']} reconnects, "
        f"{report['cancels']} cancels, {faults} faults injected "
        f"{report['faults_injected']}, failures={len(report['failures'])}, "
        f"mismatches={len(report['mismatches'])}, running at end={report['running_at_end']}"
    )


def write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
