"""The site under daphne for the tests of real third-party clients, and those clients."""

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from tests.servers import daphne, database_url, free_port

NODE = Path(__file__).parent / "node"


@contextmanager
def site(fake_openai, **env: str) -> Iterator[str]:
    """Serve the suite's database with the fake OpenAI server as the model; yield the URL."""
    port = free_port()
    defaults = {
        # The same key as the suite's: the sessions it makes must be valid there.
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url(),
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_API_KEY": "sk-test-key",
        "CHAT_MODEL": "gpt-test",
        "CHAT_MODELS": "gpt-test,gpt-other",
        "CHAT_EVENT_LOG": "memory",
        "REDIS_URL": "",
        "CHAT_SWEEP_INTERVAL": "0",
        "CHAT_CACHE_TTL": "0",
        "CHAT_UPSTREAM_MAX_RETRIES": "0",
        "LOG_LEVEL": "WARNING",
    }
    with daphne(port, {**defaults, **env}):
        yield f"http://127.0.0.1:{port}"


def node(script: str, scenario: str, env: dict[str, str], request: dict | None = None) -> dict:
    """Run a scenario of a Node client in tests/node; return the JSON it prints."""
    if not shutil.which("node") or not (NODE / "node_modules").exists():
        if os.environ.get("CI"):
            pytest.fail("CI runs the Node client tests: run `make test` to install them")
        pytest.skip("Node or tests/node/node_modules is missing (make test installs it)")
    done = subprocess.run(
        ["node", str(NODE / script), scenario],
        input=json.dumps(request or {}),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(done.stdout)
