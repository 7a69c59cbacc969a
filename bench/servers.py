"""The processes of a benchmark run: the fake upstream, the project, the Python peer."""

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
APPLICATION = "chatsite.asgi:application"
MODEL = "bench-model"
REDIS_URL = "redis://127.0.0.1:6379/14"

# How each ASGI server is started for the project (and uvicorn for the peer).
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


def raise_fd_limit() -> int:
    """Raise this process's soft open-files limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
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
        """The Python processes serving requests (below py-spy or granian's supervisor)."""
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


def project_env(workdir: Path, upstream: Server, heartbeat: float, redis: bool) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "SECRET_KEY": "bench-secret-key-not-for-production-" + "x" * 20,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
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
    }
    if redis:
        env |= {"REDIS_URL": REDIS_URL, "CHAT_EVENT_LOG": "redis"}
    return env


def project(
    env: dict[str, str], log: Path, server: str = "daphne", profile: Path | None = None
) -> contextlib.AbstractContextManager[Server]:
    """The project under an ASGI server, optionally below py-spy (raw collapsed stacks)."""
    port = free_port()
    command = [part.format(port=port, app=APPLICATION) for part in SERVER_COMMANDS[server]]
    if profile is not None:
        command = [str(BIN / "py-spy"), "record", "-r", "250", "-f", "raw", "-o", str(profile)]
        command += [
            "--",
            *[part.format(port=port, app=APPLICATION) for part in SERVER_COMMANDS[server]],
        ]
    return running(f"project/{server}", command, env, port, log)


def peer(
    upstream: Server, heartbeat: float, log: Path
) -> contextlib.AbstractContextManager[Server]:
    """The Starlette + sse-starlette + AsyncOpenAI peer under uvicorn, its usual server."""
    port = free_port()
    command = [
        part.format(port=port, app="bench.peers.starlette_peer:app")
        for part in SERVER_COMMANDS["uvicorn"]
    ]
    env = {
        "OPENAI_BASE_URL": f"{upstream.url}/v1",
        "OPENAI_API_KEY": "x",
        "PEER_MODEL": MODEL,
        "PEER_HEARTBEAT": str(heartbeat),
    }
    return running("peer", command, env, port, log)


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
