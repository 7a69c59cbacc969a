"""Real server processes for the tests that need more than one."""

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
APPLICATION = "chatsite.asgi:application"

type Process = subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def database_url() -> str:
    """Return a DATABASE_URL for the test database the suite is using now."""
    config = connection.settings_dict
    if config["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{config['NAME']}"
    user = config["USER"] or ""
    password = f":{config['PASSWORD']}" if config["PASSWORD"] else ""
    host = config["HOST"] or "127.0.0.1"
    return f"postgres://{user}{password}@{host}:{config['PORT'] or 5432}/{config['NAME']}"


def daphne(port: int, env: dict[str, str]) -> contextlib.AbstractContextManager[Process]:
    """Run the project under daphne on 127.0.0.1:port, as runserver does."""
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), APPLICATION]
    return _serving(command, port, env)


def serve(port: int, env: dict[str, str]) -> contextlib.AbstractContextManager[Process]:
    """Run one production worker on 127.0.0.1:port: `python -m chatsite.serve`."""
    command = [sys.executable, "-m", "chatsite.serve"]
    return _serving(command, port, {**env, "PORT": str(port), "WEB_CONCURRENCY": "1"})


@contextlib.contextmanager
def _serving(command: list[str], port: int, env: dict[str, str]) -> Iterator[Process]:
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "chatsite.settings", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()


NGINX = "/usr/sbin/nginx"  # Debian's


def nginx_config(site: Path, workdir: Path) -> str:
    """A whole nginx.conf around a site file, with every path nginx writes under workdir."""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
# Workers as the test's own user (nginx ignores this, with a warning, unless run as root).
user {getpass.getuser()};
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
{temp_paths}
    include {site};
}}
"""


@contextlib.contextmanager
def nginx(site: Path, port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run nginx with a site file as this process's child (not a daemon), on port."""
    config = workdir / "nginx.conf"
    config.write_text(nginx_config(site, workdir))
    command = [
        NGINX,
        *("-p", str(workdir), "-c", str(config)),
        *("-g", f"daemon off; pid {workdir / 'nginx.pid'}; error_log {workdir / 'error.log'};"),
    ]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    if checked.returncode:
        raise RuntimeError(f"nginx refuses the configuration:\n{checked.stderr}")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield process
    finally:
        process.terminate()  # nginx's fast shutdown
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
