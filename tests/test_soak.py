"""The soak test at CI size (the engine: tests/soak.py); `make soak` runs it at full size."""

import contextlib
import os
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections

from tests import soak
from tests.conftest import session_cookie
from tests.servers import free_port, serve
from tests.test_multiprocess import server_env

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

REPORT = Path(os.environ.get("SOAK_REPORT", "artifacts/soak-ci.json"))


@pytest.fixture
def sessions(transactional_db, size: soak.Size) -> list[str]:
    users = [User.objects.create_user(f"soak{n}", password="-") for n in range(size.users)]
    return [session_cookie(user) for user in users]


@pytest.fixture
def size() -> soak.Size:
    return soak.Size.from_env(concurrency=60, users=6, warmup=5, duration=15)


def soak_env(fake_openai) -> dict[str, str]:
    return {
        **server_env(fake_openai),
        "CHAT_MAX_CONCURRENT": "100000",
        "CHAT_RATE_LIMITS": "1000000/minute",
        # A slow moment under load must not pass for a dead process.
        "CHAT_LIVENESS_INTERVAL": "2",
        # Within the client's 10 s read timeout when an answer is slow to start.
        "CHAT_SSE_HEARTBEAT": "2",
    }


async def test_under_load_every_answer_is_stored_as_streamed_and_nothing_grows(
    size, sessions, fake_openai
):
    env = soak_env(fake_openai)
    ports = [free_port(), free_port()]
    with contextlib.ExitStack() as stack:
        workers = [stack.enter_context(serve(port, env)) for port in ports]
        servers = [f"http://127.0.0.1:{port}" for port in ports]
        report = await soak.run(size, servers, [w.pid for w in workers], sessions, fake_openai)
    # The soak's own async queries ran on asgiref's shared thread: close its connection.
    await sync_to_async(connections.close_all)()
    soak.write(report, REPORT)
    print(soak.summary(report))

    assert report["failures"] == []
    assert report["mismatches"] == []
    assert report["running_at_end"] == 0
    assert soak.growth_problems(report) == []
