"""
Run the benchmark (docs/performance.md explains it):

    python -m bench.run                     # every scenario, BENCH_SCALE=full by default
    python -m bench.run --scale small       # the quick sanity version
    python -m bench.run --only a,d          # some scenarios
    python -m bench.run --write-baseline    # also store the figures in bench/baseline.json
    python -m bench.run --check             # fail on a clear regression against it
    python -m bench.run --profile           # (a), (b), (d) on the project under py-spy

Prints a table per scenario and one JSON line per scenario (also appended to
bench/out/results.jsonl). Every server is stopped at the end, also on Ctrl-C.
"""

import argparse
import asyncio
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

from bench import report, scenarios, servers
from bench.scenarios import Bench, Measurement

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
OUT = HERE / "out"
ORDER = ["a", "b", "c", "d", "e", "b-uvicorn", "b-granian"]
CONVERSATIONS_PER_USER = {"full": 600, "small": 400}


def _meta(scale: str, fd_limit: int) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=servers.ROOT, capture_output=True, text=True)
        return done.stdout.strip()

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
        "fd_limit": fd_limit,
    }


def _scenario_runs(bench: Bench, profile: bool) -> dict[str, Callable[[], Awaitable[Any]]]:
    if profile:
        return {
            "a": lambda: scenarios.one_stream(bench, profile=True),
            "b": lambda: scenarios.concurrent(bench, [scenarios.project_factory(profile="b")]),
            "d": lambda: scenarios.saturation(bench, profile=True),
        }
    return {
        "a": lambda: scenarios.one_stream(bench),
        "b": lambda: scenarios.concurrent(bench),
        "c": lambda: scenarios.quiet(bench),
        "d": lambda: scenarios.saturation(bench),
        "e": lambda: scenarios.concurrent(bench, processes=2),
        "b-uvicorn": lambda: scenarios.concurrent(bench, [scenarios.project_factory("uvicorn")]),
        "b-granian": lambda: scenarios.concurrent(bench, [scenarios.project_factory("granian")]),
    }


async def _run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    scale = scenarios.SCALES[args.scale]
    meta = _meta(scale.name, servers.raise_fd_limit())
    with servers.fake_upstream(workdir / "servers.log") as upstream:
        env = servers.project_env(workdir, upstream, scenarios.HEARTBEAT, redis=False)
        servers.manage(env, "manage.py", "migrate", "--no-input")
        accounts = json.loads(
            servers.manage(
                env,
                "-m",
                "bench.dbsetup",
                str(scale.users),
                str(CONVERSATIONS_PER_USER[scale.name]),
            )
        )
        bench = Bench(
            scale, workdir, upstream, env, accounts["users"], accounts["password"],
            profile_dir=OUT if args.profile else None,
        )  # fmt: skip
        runs = _scenario_runs(bench, args.profile)
        wanted = args.only.split(",") if args.only else [name for name in ORDER if name in runs]
        records = []
        b_refs: list[Measurement] = []
        for name in wanted:
            print(f"-- scenario {name} ({scale.name})", file=sys.stderr, flush=True)
            measurements: list[Measurement] = await runs[name]()
            if name == "b":
                b_refs = [m for m in measurements if m.target != "project"]
            if name.startswith("b-"):
                measurements = b_refs + measurements  # the ratios of (b)'s references
            if args.profile:
                print(report.profile_summary(OUT / f"profile-{name}.txt"))
                continue
            records.append(report.record(name, measurements, meta))
            print(f"\n### ({name})\n\n{report.table(records[-1])}\n", flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the chat's streaming path.")
    parser.add_argument(
        "--scale", choices=scenarios.SCALES, default=os.environ.get("BENCH_SCALE", "full")
    )
    parser.add_argument("--only", help="comma-separated scenarios, of: " + ", ".join(ORDER))
    parser.add_argument("--write-baseline", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    try:
        records = asyncio.run(_run(args, workdir))
    except BaseException:
        print(f"server output kept in {workdir / 'servers.log'}", file=sys.stderr)
        raise
    shutil.rmtree(workdir)
    with (OUT / "results.jsonl").open("a") as history:
        for rec in records:
            line = json.dumps(rec, ensure_ascii=False)
            print(line)
            history.write(line + "\n")
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    if args.write_baseline and records:
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
