"""/healthz and /readyz: for load balancers, open to anyone, never cached, no secrets."""

import json

import pytest
from django.db import connections

from tests.asgi_client import AsgiClient
from tests.conftest import redis_url
from tests.servers import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


async def get(path: str, method: str = "GET") -> tuple[int, dict[str, str], dict]:
    """Request path as an anonymous client with no cookies at all: status, headers, JSON."""
    client = AsgiClient()
    client.cookies = {}
    response = await client.request(method, path)
    body = await response.body()
    return response.status, response.headers, json.loads(body) if body else {}


async def test_healthz_answers_anyone_that_the_process_is_up():
    status, headers, body = await get("/healthz")

    assert (status, body) == (200, {"status": "ok"})
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"] == "application/json"
    assert "set-cookie" not in headers


async def test_readyz_checks_the_database_alone_without_redis(settings):
    settings.REDIS_URL = ""

    status, headers, body = await get("/readyz")

    assert (status, body) == (200, {"status": "ok", "checks": {"database": "ok"}})
    assert headers["cache-control"] == "no-store"


async def test_readyz_checks_redis_when_redis_is_configured(settings):
    settings.REDIS_URL = redis_url()

    status, _, body = await get("/readyz")

    assert (status, body) == (200, {"status": "ok", "checks": {"database": "ok", "redis": "ok"}})


async def test_readyz_names_unreachable_redis_without_its_address_or_password(settings):
    port = free_port()  # nothing listens there once the probe socket is closed
    settings.REDIS_URL = f"redis://:hunter2@127.0.0.1:{port}/0"

    status, headers, body = await get("/readyz")

    assert status == 503
    assert body == {"status": "unavailable", "checks": {"database": "ok", "redis": "unavailable"}}
    assert headers["cache-control"] == "no-store"
    text = json.dumps(body)
    for secret in ("hunter2", "127.0.0.1", str(port), "://"):
        assert secret not in text


@pytest.fixture
def unreachable_database(monkeypatch, tmp_path):
    """Point new connections of the default database (the request's own) at nothing."""
    config = connections["default"].settings_dict
    if config["ENGINE"] == "django.db.backends.sqlite3":
        broken = {"NAME": str(tmp_path / "no-such-directory" / "db.sqlite3")}
    else:
        broken = {"HOST": "127.0.0.1", "PORT": str(free_port())}
    for key, value in broken.items():
        monkeypatch.setitem(config, key, value)
    if "pool" not in config["OPTIONS"]:
        yield broken
        return
    # PostgreSQL's pool keeps its connections to the real address: start a new pool, quick
    # to give up, and drop it afterwards.
    monkeypatch.setitem(config["OPTIONS"], "pool", {**config["OPTIONS"]["pool"], "timeout": 0.5})
    connections["default"].close_pool()
    yield broken
    connections["default"].close_pool()


async def test_readyz_names_an_unreachable_database_without_its_address(unreachable_database):
    status, _, body = await get("/readyz")

    assert status == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "unavailable"
    text = json.dumps(body)
    for secret in unreachable_database.values():
        assert secret not in text


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_endpoints_refuse_post_with_405_not_a_csrf_403(path):
    status, headers, _ = await get(path, method="POST")

    assert status == 405
    assert headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_endpoints_answer_head_for_probes_that_send_it(path):
    status, _, _ = await get(path, method="HEAD")

    assert status == 200
