"""
The processes of a benchmark run: the fake upstream, the project, the two peers (Python
and Node), and the project's database (SQLite, or a fresh PostgreSQL database).
"""

import contextlib
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
NODE = shutil.which("node")
APPLICATION = "chatsite.asgi:application"
MODEL = "bench-model"
REDIS_URL = "redis://127.0.0.1:6379/14"

# How each ASGI server is started for an application: uvicorn for the Python peer; the
# project is served by `chatsite.serve` (PROJECT_SERVE), or by daphne or granian.
# fmt: off
SERVER_COMMANDS = {
    "daphne": [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "{app}"],
    "uvicorn": [
        PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}",
        "--loop", "uvloop", "--http", "httptools", "--lifespan", "off",
        "--log-level", "warning", "--backlog", "4096", "{app}",
    ],
    "granian": [
        str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}",
        "--workers", "1", "--loop", "uvloop", "--no-ws", "--log-level", "warning",
        "--backlog", "4096", "{app}",
    ],
}
# fmt: on

# The project as production serves it (`make serve`): chatsite/serve.py, that is uvicorn
# with uvloop, httptools and the lifespan, here with one worker on HOST:PORT.
PROJECT_SERVE = [PYTHON, "-m", "chatsite.serve"]
PROJECT_SERVERS = ["uvicorn", "daphne", "granian"]

# Open files a quiet stream needs in one process: the client's socket and the upstream's.
FD_LIMIT_WANTED = 65536


def raise_fd_limit(wanted: int = FD_LIMIT_WANTED) -> int:
    """Raise this process's open-files limit to `wanted` where allowed (root may raise the
    hard limit too), else the soft limit to the hard one. Children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running server: its URL, and the processes whose CPU and memory are measured."""

    name: str
    url: str
    process: subprocess.Popen[bytes]

    def measured(self) -> list[psutil.Process]:
        """The processes serving requests (below py-spy or granian's supervisor)."""
        root = psutil.Process(self.process.pid)
        children = root.children(recursive=True)
        return children if children else [root]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def _stop(process: subprocess.Popen[bytes], children_first: bool) -> None:
    if process.poll() is None:
        if children_first:
            # py-spy writes its profile once the process it runs has exited.
            children = psutil.Process(process.pid).children()
            for child in children:
                child.send_signal(signal.SIGTERM)
            psutil.wait_procs(children, timeout=15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running(
    name: str, command: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[Server]:
    """Run a server process until the block ends, whatever happens in it."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=output, stderr=output
        )
    try:
        _wait_for_port(port, process)
        yield Server(name, f"http://127.0.0.1:{port}", process)
    finally:
        _stop(process, children_first=Path(command[0]).name == "py-spy")


def fake_upstream(log: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    command = [PYTHON, "-m", "bench.fake_upstream", "--port", str(port)]
    return running("fake", command, {}, port, log)


def postgres_server_url() -> str | None:
    """The PostgreSQL server to bench on: BENCH_DATABASE_URL, else a PostgreSQL
    DATABASE_URL; None for SQLite."""
    for name in ("BENCH_DATABASE_URL", "DATABASE_URL"):
        url = os.environ.get(name, "")
        if url.startswith(("postgres://", "postgresql://")):
            return url
    return None


@contextlib.contextmanager
def database(workdir: Path) -> Iterator[str]:
    """The project's database URL for one run: a SQLite file in the work directory, or on
    the PostgreSQL server that postgres_server_url() names, a fresh database of its own
    (`chat_bench_<random>`, dropped at the end)."""
    server = postgres_server_url()
    if server is None:
        yield f"sqlite:///{workdir / 'bench.sqlite3'}"
        return
    name = f"chat_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def project_env(
    database_url: str, upstream: Server, heartbeat: float, redis: bool
) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "SECRET_KEY": "bench-secret-key-not-for-production-" + "x" * 20,
        "DATABASE_URL": database_url,
        "OPENAI_BASE_URL": f"{upstream.url}/v1",
        "OPENAI_API_KEY": "x",
        "CHAT_MODEL": MODEL,
        "CHAT_MODELS": MODEL,
        "CHAT_UPSTREAM_MAX_RETRIES": "0",
        "CHAT_SSE_HEARTBEAT": str(heartbeat),
        "CHAT_ABANDON_AFTER": "0",
        # Measure the relay: no answer cache, no per-user limits (where the app has them).
        "CHAT_CACHE_TTL": "0",
        "CHAT_RATE_LIMITS": "1000000/minute",
        "CHAT_MAX_CONCURRENT": "1000000",
        "CHAT_GENERATION_TIMEOUT": "900",
        "CHAT_UPSTREAM_READ_TIMEOUT": "900",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1",
        # Stopping a server between measurements need not wait for the answers it runs.
        "CHAT_SHUTDOWN_GRACE": "0",
    }
    if redis:
        env |= {"REDIS_URL": REDIS_URL, "CHAT_EVENT_LOG": "redis"}
    return env


def project(
    env: dict[str, str],
    log: Path,
    server: str = "uvicorn",
    profile: Path | None = None,
    gil: bool = False,
) -> contextlib.AbstractContextManager[Server]:
    """The project under a server of PROJECT_SERVERS, optionally below py-spy (raw
    collapsed stacks; `gil`: of the thread holding the GIL only). `uvicorn` is the
    production server, started as `make serve` does."""
    port = free_port()
    if server == "uvicorn":
        command = PROJECT_SERVE
        env = env | {"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1"}
    else:
        command = [part.format(port=port, app=APPLICATION) for part in SERVER_COMMANDS[server]]
    if profile is not None:
        py_spy = [str(BIN / "py-spy"), "record", "-r", "250", "-f", "raw", "-o", str(profile)]
        command = [*py_spy, *(["--gil"] if gil else []), "--", *command]
    return running(f"project/{server}", command, env, port, log)


def _peer_env(upstream: Server, heartbeat: float) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": f"{upstream.url}/v1",
        "OPENAI_API_KEY": "x",
        "PEER_MODEL": MODEL,
        "PEER_HEARTBEAT": str(heartbeat),
    }


def peer(
    upstream: Server, heartbeat: float, log: Path
) -> contextlib.AbstractContextManager[Server]:
    """The Starlette + sse-starlette + AsyncOpenAI peer under uvicorn, its usual server."""
    port = free_port()
    command = [
        part.format(port=port, app="bench.peers.starlette_peer:app")
        for part in SERVER_COMMANDS["uvicorn"]
    ]
    return running("peer", command, _peer_env(upstream, heartbeat), port, log)


def node_peer(
    upstream: Server, heartbeat: float, log: Path
) -> contextlib.AbstractContextManager[Server]:
    """The Node peer (node:http and fetch, bench/peers/node_peer.mjs) on PORT."""
    if NODE is None:
        raise RuntimeError("the Node peer needs `node` (20 or later) on PATH")
    port = free_port()
    env = _peer_env(upstream, heartbeat) | {"HOST": "127.0.0.1", "PORT": str(port)}
    return running("node_peer", [NODE, "bench/peers/node_peer.mjs"], env, port, log)


def manage(env: dict[str, str], *args: str) -> str:
    """Run a Django management command (or a bench script) with the project's settings."""
    done = subprocess.run(
        [PYTHON, *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr.decode()}")
    return done.stdout.decode()


def redis_pid() -> int | None:
    """The local Redis server's pid, to count its CPU in the Redis scenario."""
    for process in psutil.process_iter(["name"]):
        if process.info["name"] and process.info["name"].startswith("redis-server"):
            return process.pid
    return None
