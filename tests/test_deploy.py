"""Production: DJANGO_ENV=production as docs/deploy.md sets it up, and many streams at once."""

import asyncio
import gzip
import http.client
import re
import secrets
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.db.backends.signals import connection_created
from django.urls import URLResolver, get_resolver

from chat import checks, generation, handler
from chat.apps import tidy_at_request_end_only
from chat.models import Conversation, Generation
from chat.views.decorators import THREADLESS
from tests.asgi_client import AsgiClient, Response, read_until
from tests.conftest import held_by_requests
from tests.fakeopenai import Reply
from tests.servers import ROOT, daphne, database_url, free_port
from tests.test_settings import startup_environment

HOST = "chat.example.com"
FOREVER = "max-age=315360000, public, immutable"  # WhiteNoise's, for a file with a hashed name


@pytest.fixture
def production(tmp_path: Path) -> dict[str, str]:
    """An operator's production environment, with its static files and database in tmp_path."""
    return startup_environment(
        {
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "DJANGO_ENV": "production",
            "DJANGO_DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": HOST,
            "CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
            "TRUST_X_FORWARDED_PROTO": "1",
            "STATIC_ROOT": str(tmp_path / "staticfiles"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "CHAT_SWEEP_INTERVAL": "0",
        }
    )


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEB_CONCURRENCY": "2"}, "WEB_CONCURRENCY=2 needs REDIS_URL"),
        ({"WEB_CONCURRENCY": "two"}, "WEB_CONCURRENCY must be a whole number of at least 1"),
        ({"PORT": "-1"}, "PORT must be a whole number of at least 1, not '-1'"),
        ({"SERVE_DRAIN_SECONDS": "1.5"}, "SERVE_DRAIN_SECONDS must be a whole number"),
    ],
)
def test_the_server_refuses_a_bad_setup_before_any_worker_starts(production, env, message):
    started = subprocess.run(
        [sys.executable, "-m", "chatsite.serve"],
        cwd=ROOT,
        env={**production, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert started.returncode == 1
    assert message in started.stderr


def test_the_deploy_check_finds_nothing_to_report_in_production(production):
    checked = manage(production, "check", "--deploy", "--fail-level", "WARNING")

    assert checked.returncode == 0, checked.stderr
    assert "System check identified no issues" in checked.stdout
    assert checked.stderr == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DJANGO_DEBUG": "1"}, "DJANGO_DEBUG must be off when DJANGO_ENV=production"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS must be set when DJANGO_ENV=production"),
        (
            {"CSRF_TRUSTED_ORIGINS": ""},
            "CSRF_TRUSTED_ORIGINS must be set when DJANGO_ENV=production",
        ),
        ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_production_refuses_to_start_without_a_required_setting(production, change, message):
    checked = manage({**production, **change}, "check")

    assert checked.returncode != 0
    last_line = checked.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"django.core.exceptions.ImproperlyConfigured: {message}")


def get(port: int, path: str, **headers: str) -> tuple[http.client.HTTPResponse, bytes]:
    """GET through daphne as nginx would pass it on: the site's host, over HTTPS."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "GET", path, headers={"Host": HOST, "X-Forwarded-Proto": "https", **headers}
        )
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def test_production_serves_collected_static_files_hashed_compressed_and_cached_for_good(
    production,
):
    collected = manage(production, "collectstatic", "--no-input")
    assert collected.returncode == 0, collected.stderr

    port = free_port()
    with daphne(port, production):
        page, html = get(port, "/accounts/login/")
        css = re.search(rb'href="(/static/css/chat\.[0-9a-f]{12}\.css)"', html)
        htmx = re.search(rb'src="(/static/vendor/htmx-4\.0\.1\.min\.[0-9a-f]{12}\.js)"', html)
        assert css and htmx, html.decode()
        plain, css_body = get(port, css[1].decode())
        compressed, htmx_body = get(port, htmx[1].decode(), **{"Accept-Encoding": "gzip"})

    assert page.status == 200
    assert (plain.status, plain.headers["Cache-Control"]) == (200, FOREVER)
    assert css_body == (ROOT / "static" / "css" / "chat.css").read_bytes()
    assert (compressed.status, compressed.headers["Content-Encoding"]) == (200, "gzip")
    assert gzip.decompress(htmx_body) == (ROOT / "static/vendor/htmx-4.0.1.min.js").read_bytes()


STREAMS = 200


async def open_stream(
    api: AsgiClient, conversation: Conversation, *, token: bool = True
) -> Response:
    """Post a message and read its stream up to the first token, leaving it open.

    Without its token the stream is authorised by the session, as a bare URL is.
    """
    posted = await (
        await api.post(f"/api/conversations/{conversation.pk}/messages/", {"content": "Hi"})
    ).json()
    url = posted["generation"]["stream_url"]
    reader = await api.get(url if token else url.split("?")[0])
    await read_until(reader, 1)
    return reader


def connections_on_the_server() -> int:
    """Count the PostgreSQL sessions on the test database, this counting one left out."""
    with psycopg.connect(database_url()) as counting:
        return counting.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]


async def stop_all(readers: list[Response]) -> None:
    """Stop every answer still running, and read each stream to its end."""
    async for running in Generation.objects.filter(last_event_id__isnull=True):
        await generation.cancel(running)
    for reader in readers:
        await reader.body()


@pytest.fixture
def event_log(settings) -> str:
    """One event log is enough here: readers of either hold no database connection."""
    settings.CHAT_EVENT_LOG = "memory"
    return "memory"


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_two_hundred_open_streams_hold_no_database_connection_and_no_thread(
    api, upstream, alice, settings
):
    alice.is_staff = True  # exempt from the per-user limits, which would stop at 2 streams
    await alice.asave()
    # One token, then silence until the test stops the answers: none ends while it counts.
    upstream.reply_to("Hi", Reply(tokens=["first "], hang=True))
    settings.CHAT_UPSTREAM_READ_TIMEOUT = 120.0
    conversations = await Conversation.objects.abulk_create(
        Conversation(owner=alice, model="gpt-test") for _ in range(STREAMS)
    )
    opened, readers = [], []

    def track(sender, connection, **kwargs):
        opened.append(connection)

    connection_created.connect(track)
    try:
        # Warm up: the worker threads of db.run's pool start with the first streams, and
        # all of them once the pool is filled (it may otherwise add its last threads at
        # any overlap of database work later on).
        for number, conversation in enumerate(conversations):
            readers.append(await open_stream(api, conversation, token=number % 2 == 0))
            if number == 19:
                await every_worker_thread_started()
                threads_warm = threading.active_count()
        threads_open = threading.active_count()
        held = held_by_requests(opened)
        kept = [c for c in opened if c.connection is not None and c not in held]
        on_server = 0
        if connection.vendor == "postgresql":
            on_server = await asyncio.to_thread(connections_on_the_server)
    finally:
        connection_created.disconnect(track)
        await stop_all(readers)

    assert opened, "requests opened no connection: the test proves nothing"
    assert held == []
    # What SQLite keeps: one connection per worker thread of the loop, not per stream.
    assert len({c._thread_ident for c in kept}) == len(kept) <= 32
    # No thread per open stream, by token or by session: 180 more streams, no more threads.
    assert threads_open <= threads_warm + 1
    # At most the pool's (CHAT_DB_POOL_MAX, 10 in tests) and pytest's own: not one per stream.
    assert on_server <= 12


async def every_worker_thread_started() -> None:
    """Give the event loop's default executor (db.run's) more blocking work than threads."""
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(None, time.sleep, 0.05) for _ in range(40)))


@pytest.fixture
def request_signals_as_served() -> None:
    """request_started's receivers as the app sets them in a server: Django's test client
    connects close_old_connections again after each of its requests, as it will after
    this test."""
    tidy_at_request_end_only()


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("request_signals_as_served")
async def test_an_answer_is_posted_and_streamed_while_asgirefs_shared_thread_is_busy(
    api, upstream, alice
):
    # Nothing before an API view waits for that thread: the event loop, busy with other
    # answers, would make every such trip long.
    upstream.reply_to("Hi", Reply(tokens=["first "], hang=True))
    conversation = await Conversation.objects.acreate(owner=alice, model="gpt-test")
    release = threading.Event()
    busy = asyncio.create_task(sync_to_async(release.wait)())
    try:
        reader = await asyncio.wait_for(open_stream(api, conversation), 5)
    finally:
        release.set()
        await busy
    await stop_all([reader])


def test_every_view_of_the_api_runs_without_a_thread_of_its_own():
    api = [
        (str(prefix.pattern) + str(pattern.pattern), pattern.callback)
        for prefix in get_resolver().url_patterns
        if isinstance(prefix, URLResolver) and handler.threadless_path("/" + str(prefix.pattern))
        for pattern in prefix.url_patterns
    ]

    assert len(api) > 20
    assert [route for route, view in api if view not in THREADLESS] == []
    assert not handler.threadless_path("/c/" + str(uuid.uuid4()) + "/messages")


def test_the_deploy_check_warns_when_a_security_middleware_is_left_out(settings):
    settings.MIDDLEWARE = [
        path for path in settings.MIDDLEWARE if path != "chat.inline_middleware.CsrfViewMiddleware"
    ]

    warnings = checks.inline_security_middleware()

    assert [warning.id for warning in warnings] == ["chat.W003"]
