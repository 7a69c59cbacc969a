"""
The scenarios. Each runs the same load against every target (the upstream read directly,
the Starlette peer, the Node peer, the project) in one run, each target on fresh server
processes, and returns one Measurement per target; the sweep does so at each of its levels.
"""

import asyncio
import contextlib
import itertools
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

from bench import loadgen, servers
from bench.loadgen import Direct, Peer, Project, Slot, StreamResult, Target, Usage


@dataclass(frozen=True)
class Scale:
    name: str
    users: int
    a_repeats: int
    b_streams: int
    b_tokens: int
    b_spread: float  # seconds over which (b)'s streams start
    c_streams: int
    c_observe: float  # seconds of quiet observed once every stream is open
    d_seconds: float
    a_tokens: int = 500
    f_answers: int = 200
    b_rate: float = 20
    c_open_rate: float = 40  # quiet streams opened per second
    c_heartbeat: float = 2
    d_concurrency: int = 8
    d_tokens: int = 1000
    # The sweep: (b)'s load at each active concurrency, (c)'s at each number of quiet
    # streams (opened at sweep_open_rate per second, observed sweep_observe seconds).
    sweep_active: tuple[int, ...] = (50, 200, 400)
    sweep_quiet: tuple[int, ...] = (1000, 5000, 10000)
    sweep_open_rate: float = 200
    sweep_observe: float = 5

    @property
    def b_start_rate(self) -> float:
        """Streams started per second in (b), and at every active level of the sweep."""
        return self.b_streams / self.b_spread

    def sweep_conversations(self) -> int:
        """The project's conversations the sweep posts into (3 warm-ups per level)."""
        levels = (*self.sweep_active, *self.sweep_quiet)
        return sum(levels) + 3 * len(levels)


SCALES = {
    "full": Scale("full", users=8, a_repeats=10, b_streams=200, b_tokens=100, b_spread=2,
                  c_streams=2000, c_observe=10, d_seconds=10),
    "small": Scale("small", users=3, a_repeats=4, b_streams=40, b_tokens=30, b_spread=1,
                   c_streams=200, c_observe=5, d_seconds=3, f_answers=50, sweep_active=(20, 50),
                   sweep_quiet=(200, 500), sweep_observe=2),
}  # fmt: skip

STREAM_TIMEOUT = 120.0  # no single stream of any scenario may take longer
HEARTBEAT = 15.0  # the project's default, for every scenario but (c)
PROFILE_REPEATS = 10  # (a) runs this many times longer under the profiler


@dataclass
class Measurement:
    """One target under one scenario."""

    target: str
    results: list[StreamResult]
    usage: Usage  # the server(s) under test; for `direct`, the fake upstream itself
    upstream: Usage  # the fake upstream
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Bench:
    """What the scenarios share: the work directory, the upstream, the project's users."""

    scale: Scale
    workdir: Path
    upstream: servers.Server
    env: dict[str, str]
    accounts: dict[str, list[str]]
    password: str
    profile_dir: Path | None = None
    profile_gil: bool = False  # profile only the thread holding the GIL: Python's own CPU
    _sessions: dict[str, dict[str, str]] = field(default_factory=dict)
    _conversations: Iterator[tuple[str, str]] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "servers.log"

    async def slots(self, base: str, count: int) -> list[Slot]:
        """`count` unused conversations, round-robin over the users (logged in once)."""
        if not self._sessions:
            for user in self.accounts:
                self._sessions[user] = await loadgen.login(base, user, self.password)
        if self._conversations is None:
            by_user = [[(user, c) for c in convs] for user, convs in self.accounts.items()]
            self._conversations = iter(
                [pair for row in itertools.zip_longest(*by_user) for pair in row if pair]
            )
        taken = list(itertools.islice(self._conversations, count))
        if len(taken) < count:
            raise RuntimeError("the bench database ran out of conversations")
        return [Slot(self._sessions[user], conversation) for user, conversation in taken]


# A target factory: start what the target needs, yield it with the processes to measure.
Factory = Callable[[Bench, int], contextlib.AbstractAsyncContextManager[tuple[Target, list]]]


@contextlib.asynccontextmanager
async def direct(bench: Bench, streams: int) -> AsyncIterator[tuple[Target, list]]:
    yield Direct(bench.upstream.url), bench.upstream.measured()


# The peers by target name: the same feature without the project, in Python and in Node.
PEERS = {"peer": servers.peer, "node_peer": servers.node_peer}


def peer_factory(name: str = "peer", heartbeat: float = HEARTBEAT) -> Factory:
    start = PEERS[name]

    @contextlib.asynccontextmanager
    async def peer(bench: Bench, streams: int) -> AsyncIterator[tuple[Target, list]]:
        with start(bench.upstream, heartbeat, bench.log) as server:
            yield Peer(server.url, name), server.measured()

    return peer


def peer_factories(heartbeat: float = HEARTBEAT) -> list[Factory]:
    """Both peers; the Node one only where `node` is installed."""
    names = [name for name in PEERS if name != "node_peer" or servers.NODE]
    return [peer_factory(name, heartbeat) for name in names]


def project_factory(
    server: str = "uvicorn",
    heartbeat: float = HEARTBEAT,
    processes: int = 1,
    profile: str | None = None,
) -> Factory:
    """The project on `processes` servers; more than one share Redis as the event log."""

    @contextlib.asynccontextmanager
    async def project(bench: Bench, streams: int) -> AsyncIterator[tuple[Target, list]]:
        env = bench.env | {"CHAT_SSE_HEARTBEAT": str(heartbeat)}
        if processes > 1:
            redis.Redis.from_url(servers.REDIS_URL).flushdb()
            env |= {"REDIS_URL": servers.REDIS_URL, "CHAT_EVENT_LOG": "redis"}
        with contextlib.ExitStack() as stack:
            running = [
                stack.enter_context(
                    servers.project(
                        env,
                        bench.log,
                        server,
                        _profile_path(bench, profile, number, processes),
                        gil=bench.profile_gil,
                    )
                )
                for number in range(1, processes + 1)
            ]
            slots = await bench.slots(running[0].url, streams)
            measured = [p for s in running for p in s.measured()]
            yield Project([s.url for s in running], slots), measured

    return project


def _profile_path(bench: Bench, name: str | None, number: int, processes: int) -> Path | None:
    """Where py-spy writes a profiled process's stacks: one file per process."""
    if name is None or bench.profile_dir is None:
        return None
    return bench.profile_dir / (
        f"profile-{name}-{number}.txt" if processes > 1 else f"profile-{name}.txt"
    )


async def _streams(
    target: Target,
    count: int,
    prompt: str,
    spread: float = 0,
    first: int = 0,
) -> list[StreamResult]:
    """Run `count` streams, started evenly over `spread` seconds, to their end."""
    tokens = int(prompt.split()[0].split("=")[1])
    results = [StreamResult(tokens) for _ in range(count)]
    async with loadgen.client(STREAM_TIMEOUT) as http:

        async def one(index: int) -> None:
            await loadgen.run_stream(target, http, first + index, prompt, results[index])

        tasks = await loadgen.staggered(count, spread, one)
        await asyncio.wait(tasks, timeout=STREAM_TIMEOUT + spread)
        for task in tasks:
            task.cancel()
    return results


async def _each_target(
    bench: Bench,
    factories: list[Factory],
    streams: int,
    measure: Callable[[Target, list[psutil.Process]], Awaitable[Measurement]],
) -> list[Measurement]:
    found = []
    for factory in factories:
        began = time.monotonic()
        async with factory(bench, streams + 3) as (target, processes):
            # Warm up: imports, the SDK client, connection pools, URL resolvers.
            await _streams(target, 3, loadgen.prompt(20), first=1000)
            found.append(await measure(target, processes))
        print(f"   {target.name}: {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
    return found


def _references(heartbeat: float = HEARTBEAT) -> list[Factory]:
    return [direct, *peer_factories(heartbeat)]


async def _measure_streams(
    bench: Bench,
    target: Target,
    processes: list[psutil.Process],
    run: Callable[[], Awaitable[list[StreamResult]]],
    extra_processes: dict[str, list[psutil.Process]] | None = None,
) -> Measurement:
    others = extra_processes or {}
    async with contextlib.AsyncExitStack() as stack:
        usage = await stack.enter_async_context(loadgen.measured(processes))
        upstream = await stack.enter_async_context(loadgen.measured(bench.upstream.measured()))
        other = {n: await stack.enter_async_context(loadgen.measured(p)) for n, p in others.items()}
        results = await run()
    extra = {f"{name}_cpu_s": value.cpu for name, value in other.items()}
    return Measurement(target.name, results, usage, upstream, extra)


async def one_stream(bench: Bench, profile: bool = False) -> list[Measurement]:
    """(a) One stream at a time, 500 tokens at full speed, repeated."""
    scale = bench.scale
    repeats = scale.a_repeats * (PROFILE_REPEATS if profile else 1)
    factories = [project_factory(profile="a")] if profile else [*_references(), project_factory()]
    return await _in_turn(bench, factories, repeats, loadgen.prompt(scale.a_tokens))


async def answers(bench: Bench, profile: bool = False) -> list[Measurement]:
    """(f) Answers of one token, one after another: what an answer costs apart from its
    tokens (its CPU µs per token is CPU µs per answer)."""
    factories = [project_factory(profile="f")] if profile else [*_references(), project_factory()]
    return await _in_turn(bench, factories, bench.scale.f_answers, loadgen.prompt(1))


async def _in_turn(
    bench: Bench, factories: list[Factory], count: int, prompt: str
) -> list[Measurement]:
    """`count` streams on each target, each started once the one before has ended."""

    async def sequential(target: Target) -> list[StreamResult]:
        found = []
        for index in range(count):
            found += await _streams(target, 1, prompt, first=index)
        return found

    async def measure(target: Target, processes: list[psutil.Process]) -> Measurement:
        return await _measure_streams(bench, target, processes, lambda: sequential(target))

    return await _each_target(bench, factories, count, measure)


async def concurrent(
    bench: Bench,
    factories: list[Factory] | None = None,
    processes: int = 1,
    streams: int | None = None,
) -> list[Measurement]:
    """(b) Many concurrent streams at a model's pace; (e) the same on two processes; the
    sweep's active levels with `streams` of them (started at (b)'s rate)."""
    scale = bench.scale
    count = streams or scale.b_streams
    spread = count / scale.b_start_rate
    prompt = loadgen.prompt(scale.b_tokens, scale.b_rate)
    pid = servers.redis_pid() if processes > 1 else None
    extra = {"redis": [psutil.Process(pid)]} if pid else None

    async def measure(target: Target, measured: list[psutil.Process]) -> Measurement:
        def run() -> Awaitable[list[StreamResult]]:
            return _streams(target, count, prompt, spread)

        use_extra = extra if isinstance(target, Project) else None
        found = await _measure_streams(bench, target, measured, run, use_extra)
        growth = found.usage.rss_peak - found.usage.rss_start
        found.extra["rss_growth_kb_per_stream"] = growth / count / 1024
        return found

    if factories is None:
        factories = [*_references(), project_factory(processes=processes)]
    return await _each_target(bench, factories, count, measure)


async def quiet(
    bench: Bench,
    streams: int | None = None,
    open_rate: float | None = None,
    observe: float | None = None,
) -> list[Measurement]:
    """(c) Many open streams whose model has not started answering: memory, heartbeats.
    The sweep's quiet levels pass their own number of streams, pace and observation."""
    scale = bench.scale
    count = streams or scale.c_streams
    spread = count / (open_rate or scale.c_open_rate)
    observation = observe or scale.c_observe
    # The answers start long after the observation: only heartbeats flow meanwhile.
    prompt = loadgen.prompt(5, ttft=600)

    async def measure(target: Target, processes: list[psutil.Process]) -> Measurement:
        results = [StreamResult(5) for _ in range(count)]
        async with loadgen.client(STREAM_TIMEOUT * 10) as http:
            before = loadgen.rss(processes)

            async def one(index: int) -> None:
                await loadgen.run_stream(target, http, index, prompt, results[index])

            tasks = await loadgen.staggered(count, spread, one)
            try:
                # Until every stream has its first bytes (or failed); at most 180 s, or
                # 50 ms a stream where that is longer.
                deadline = asyncio.get_running_loop().time() + max(180, count / 20)
                while asyncio.get_running_loop().time() < deadline:
                    if all(r.ttfb is not None or r.error for r in results):
                        break
                    await asyncio.sleep(0.1)
                opened = sum(r.ttfb is not None and not r.error for r in results)
                for result in results:
                    result.pings.clear()  # only the pings of the observation count
                async with loadgen.measured(processes) as usage:
                    await asyncio.sleep(observation)
                upstream_open = (await asyncio.to_thread(loadgen.fake_stats, bench.upstream.url))[
                    "open"
                ]
                after = loadgen.rss(processes)
                threads = sum(p.num_threads() for p in processes)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks, timeout=30)
        extra = {
            "open_streams": opened,
            "rss_per_stream_kb": (after - before) / max(opened, 1) / 1024,
            # What holding a quiet stream costs: its heartbeats, timers, the loop's work.
            "cpu_us_per_stream_s": usage.cpu / usage.wall / max(opened, 1) * 1e6,
            "upstream_open": upstream_open,
            "server_threads": threads,
            "heartbeat_s": scale.c_heartbeat,
        }
        return Measurement(target.name, results, usage, usage, extra)

    factories = [
        *peer_factories(scale.c_heartbeat),
        project_factory(heartbeat=scale.c_heartbeat),
    ]
    return await _each_target(bench, factories, count, measure)


def sweep_name(kind: str, level: int) -> str:
    """The scenario name of one level of the sweep: sweep-active-200, sweep-quiet-5000."""
    return f"sweep-{kind}-{level}"


async def sweep(bench: Bench) -> dict[str, list[Measurement]]:
    """Cost as the work grows: (b) at each active concurrency, (c) at each number of quiet
    streams, on the peers and the project (no `direct`: its figures do not move)."""
    scale = bench.scale
    found = {}
    for level in scale.sweep_active:
        factories = [*peer_factories(), project_factory()]
        found[sweep_name("active", level)] = await concurrent(bench, factories, streams=level)
    for level in scale.sweep_quiet:
        found[sweep_name("quiet", level)] = await quiet(
            bench, level, scale.sweep_open_rate, scale.sweep_observe
        )
    return found


async def saturation(bench: Bench, profile: bool = False) -> list[Measurement]:
    """(d) Streams at full speed, a few at a time, for a fixed time: tokens per CPU second."""
    scale = bench.scale
    prompt = loadgen.prompt(scale.d_tokens)

    async def flood(target: Target) -> list[StreamResult]:
        found: list[StreamResult] = []
        deadline = asyncio.get_running_loop().time() + scale.d_seconds
        counter = itertools.count()

        async def worker() -> None:
            while asyncio.get_running_loop().time() < deadline:
                found.extend(await _streams(target, 1, prompt, first=next(counter)))

        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(scale.d_concurrency))),
            scale.d_seconds + STREAM_TIMEOUT,
        )
        return found

    async def measure(target: Target, processes: list[psutil.Process]) -> Measurement:
        return await _measure_streams(bench, target, processes, lambda: flood(target))

    # Enough conversations for the streams that fit in the time at a generous pace.
    streams = scale.d_concurrency * int(scale.d_seconds * 20 + 5)
    factories = [project_factory(profile="d")] if profile else [*_references(), project_factory()]
    return await _each_target(bench, factories, streams, measure)
