"""
Run the benchmark (docs/performance.md explains it):

    python -m bench.run                     # every scenario, BENCH_SCALE=full by default
    python -m bench.run --scale small       # the quick sanity version
    python -m bench.run --only a,d          # some scenarios
    python -m bench.run --only sweep        # cost as work grows, plots in bench/out/plots/
    python -m bench.run --only sweep --sweep-active 50,100 --sweep-quiet none
    python -m bench.run --write-baseline    # also store the figures in bench/baseline.json
    python -m bench.run --check             # fail on a clear regression against it
    python -m bench.run --profile           # (a), (b), (d), (e), (f) on the project under py-spy
    python -m bench.run --profile --gil     # ... of the thread holding the GIL: Python's CPU

The project runs under its production server (uvicorn, as `make serve` starts it) unless
the scenario says otherwise (b-daphne: runserver's server). On SQLite in a temp directory,
or on PostgreSQL in a fresh database of its own when BENCH_DATABASE_URL (or DATABASE_URL)
names a PostgreSQL server, e.g. BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres.

Prints a table per scenario and one JSON line per scenario (also appended to
bench/out/results.jsonl); the sweep also prints a table per figure and draws PNG plots.
The servers' output of the last run is left in bench/out/servers.log.
Every server is stopped at the end, also on Ctrl-C.
"""

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import plots, report, scenarios, servers
from bench.scenarios import Bench, Measurement, Scale

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
OUT = HERE / "out"
PLOTS = OUT / "plots"
ORDER = ["a", "b", "c", "d", "e", "b-daphne", "b-granian"]  # what runs by default
OPT_IN = ["f", "sweep"]  # run with --only
CONVERSATIONS_PER_USER = {"full": 600, "small": 400}  # enough for ORDER; the sweep adds its own

# A scenario's run: its measurements, or (the sweep) its measurements by level name.
Found = list[Measurement] | dict[str, list[Measurement]]


def _meta(scale: str, fd_limit: int, database_url: str) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=servers.ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    def version(*command: str) -> str | None:
        if not shutil.which(command[0]):
            return None
        return subprocess.run(command, capture_output=True, text=True).stdout.strip()

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {
        "commit": git("rev-parse", "--short", "HEAD")
        + ("+dirty" if git("status", "--porcelain") else ""),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "scale": scale,
        "machine": f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}",
        "node": version("node", "--version"),
        "database": "postgresql" if database_url.startswith("postgres") else "sqlite",
        "fd_limit": fd_limit,
    }


def _scenario_runs(bench: Bench, profile: bool) -> dict[str, Callable[[], Awaitable[Found]]]:
    if profile:
        return {
            "a": lambda: scenarios.one_stream(bench, profile=True),
            "b": lambda: scenarios.concurrent(bench, [scenarios.project_factory(profile="b")]),
            "d": lambda: scenarios.saturation(bench, profile=True),
            "e": lambda: scenarios.concurrent(
                bench, [scenarios.project_factory(processes=2, profile="e")]
            ),
            "f": lambda: scenarios.answers(bench, profile=True),
        }
    return {
        "a": lambda: scenarios.one_stream(bench),
        "b": lambda: scenarios.concurrent(bench),
        "c": lambda: scenarios.quiet(bench),
        "d": lambda: scenarios.saturation(bench),
        "e": lambda: scenarios.concurrent(bench, processes=2),
        # (b) under the server of `make run` (runserver is daphne's), and under granian.
        "b-daphne": lambda: scenarios.concurrent(bench, [scenarios.project_factory("daphne")]),
        "b-granian": lambda: scenarios.concurrent(bench, [scenarios.project_factory("granian")]),
        "f": lambda: scenarios.answers(bench),
        "sweep": lambda: scenarios.sweep(bench),
    }


def _conversations_per_user(scale: Scale, wanted: list[str]) -> int:
    per_user = CONVERSATIONS_PER_USER[scale.name]
    if "sweep" in wanted:
        per_user += -(-scale.sweep_conversations() // scale.users)
    return per_user


def _levels(text: str | None) -> tuple[int, ...] | None:
    """A sweep's levels from the command line: "50,200" or "none"; None: the scale's."""
    if text is None:
        return None
    return () if text == "none" else tuple(int(level) for level in text.split(","))


async def _run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    scale = scenarios.SCALES[args.scale]
    overrides = {
        "sweep_active": _levels(args.sweep_active),
        "sweep_quiet": _levels(args.sweep_quiet),
    }
    scale = dataclasses.replace(scale, **{k: v for k, v in overrides.items() if v is not None})
    fd_limit = servers.raise_fd_limit()
    runs_known = [*ORDER, *OPT_IN]
    wanted = args.only.split(",") if args.only else ORDER
    if unknown := [name for name in wanted if name not in runs_known]:
        sys.exit(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(runs_known)}")
    with (
        servers.fake_upstream(workdir / "servers.log") as upstream,
        servers.database(workdir) as database_url,
    ):
        meta = _meta(scale.name, fd_limit, database_url)
        env = servers.project_env(database_url, upstream, scenarios.HEARTBEAT, redis=False)
        servers.manage(env, "manage.py", "migrate", "--no-input")
        per_user = _conversations_per_user(scale, wanted)
        accounts = json.loads(
            servers.manage(env, "-m", "bench.dbsetup", str(scale.users), str(per_user))
        )
        bench = Bench(
            scale, workdir, upstream, env, accounts["users"], accounts["password"],
            profile_dir=OUT if args.profile else None, profile_gil=args.gil,
        )  # fmt: skip
        runs = _scenario_runs(bench, args.profile)
        records = []
        b_refs: list[Measurement] = []
        for name in wanted:
            if name not in runs:
                continue  # not profiled
            print(f"-- scenario {name} ({scale.name})", file=sys.stderr, flush=True)
            found = await runs[name]()
            if args.profile:
                for path in sorted(OUT.glob(f"profile-{name}.txt")) + sorted(
                    OUT.glob(f"profile-{name}-[0-9].txt")
                ):
                    print(report.profile_summary(path))
                continue
            levels = found if isinstance(found, dict) else {name: found}
            for level, measurements in levels.items():
                if level == "b":
                    b_refs = [m for m in measurements if m.target != "project"]
                if level.startswith("b-"):
                    measurements = b_refs + measurements  # the ratios of (b)'s references
                records.append(report.record(level, measurements, meta))
                print(f"\n### ({level})\n\n{report.table(records[-1])}\n", flush=True)
            if name == "sweep":
                swept = records[len(records) - len(levels) :]
                print(f"\n### The sweep\n\n{report.sweep_table(swept)}\n", flush=True)
                for path in plots.draw(swept, PLOTS):
                    print(f"plot: {path}", flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the chat's streaming path.")
    parser.add_argument(
        "--scale", choices=scenarios.SCALES, default=os.environ.get("BENCH_SCALE", "full")
    )
    parser.add_argument(
        "--only", help="comma-separated scenarios, of: " + ", ".join([*ORDER, *OPT_IN])
    )
    parser.add_argument(
        "--sweep-active", help="the sweep's active levels, e.g. 50,200,400, or none"
    )
    parser.add_argument("--sweep-quiet", help="the sweep's quiet levels, e.g. 1000,5000, or none")
    parser.add_argument("--write-baseline", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--gil", action="store_true", help="with --profile: the thread holding the GIL only"
    )
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    try:
        records = asyncio.run(_run(args, workdir))
    except BaseException:
        print(f"server output kept in {workdir / 'servers.log'}", file=sys.stderr)
        raise
    shutil.move(workdir / "servers.log", OUT / "servers.log")  # the last run's, to read
    shutil.rmtree(workdir)
    with (OUT / "results.jsonl").open("a") as history:
        for rec in records:
            line = json.dumps(rec, ensure_ascii=False)
            print(line)
            history.write(line + "\n")
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    if args.write_baseline and records:
        if args.only:  # replace the scenarios that ran, keep the others
            ran = {rec["scenario"] for rec in records}
            kept = [rec for rec in baseline.get(args.scale, []) if rec["scenario"] not in ran]
            records = kept + records
        baseline[args.scale] = records
        BASELINE.write_text(json.dumps(baseline, indent=1, ensure_ascii=False) + "\n")
    if args.check:
        if args.scale not in baseline:
            sys.exit(f"no {args.scale} baseline in {BASELINE}: run `make bench` first")
        problems = report.regressions(baseline[args.scale], records)
        for problem in problems:
            print(f"REGRESSION {problem}", file=sys.stderr)
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
