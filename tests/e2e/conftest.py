"""
Browser tests: Debian's Chromium driven by Playwright, against the app under daphne.

One daphne process per module serves the suite's test database, with the in-memory event
log and the session's fake OpenAI server behind it. Without Playwright or Chromium the
tests skip with the reason, except in CI (CI set), where that is a failure.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from tests import servers
from tests.conftest import session_cookie
from tests.servers import daphne, database_url, free_port

CHROMIUM = os.environ.get("CHAT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
MODELS = '[{"name": "gpt-test", "label": "Test model", "vision": true}, "gpt-other"]'
TOOLS = ["chat.tools.builtin.calculator", "tests.tools_for_tests.slow_steps"]


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI runs the browser tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def allow_orm_beside_playwright() -> Iterator[None]:
    """Let the tests use the ORM while Playwright's sync API keeps its event loop running.

    Playwright runs an asyncio loop in the test's thread (in a greenlet), which Django
    takes for an async context. The tests' ORM calls are plain synchronous code all the
    same; this module's tests alone get the permission, and lose it afterwards.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, fake_openai) -> Iterator[str]:
    with django_db_blocker.unblock():
        env = {
            # The same key as the suite's: the sessions it makes must be valid there.
            "SECRET_KEY": settings.SECRET_KEY,
            "DATABASE_URL": database_url(),
            "OPENAI_BASE_URL": fake_openai.base_url,
            "OPENAI_API_KEY": "sk-test-key",
            "CHAT_MODEL": "gpt-test",
            "CHAT_MODELS": MODELS,
            "CHAT_EVENT_LOG": "memory",
            "REDIS_URL": "",
            "CHAT_SWEEP_INTERVAL": "0",
            "CHAT_CACHE_TTL": "0",
            "CHAT_UPSTREAM_MAX_RETRIES": "0",
            "CHAT_CHECKPOINT_INTERVAL": "0.2",
            "CHAT_TOOLS": ",".join(TOOLS),
            "LOG_LEVEL": "WARNING",
            "MEDIA_ROOT": tempfile.mkdtemp(prefix="chat-e2e-media-"),
        }
    port = free_port()
    application = servers.APPLICATION
    # The daphne helper serves servers.APPLICATION: this one adds the static files.
    servers.APPLICATION = "tests.e2e.asgi:application"
    try:
        with daphne(port, env):
            yield f"http://127.0.0.1:{port}"
    finally:
        servers.APPLICATION = application


@pytest.fixture(scope="module")
def browser(allow_orm_beside_playwright) -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    if not shutil.which(CHROMIUM):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        # launch() gives Chromium a new, empty temporary profile (user-data-dir) each time.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def upstream_fake(fake_openai):
    fake_openai.reset()
    yield fake_openai
    fake_openai.reset()


class Session:
    """A browser page, with what the tests check on every page: no dialog, no CSP error."""

    def __init__(self, context, base: str) -> None:
        self.context = context
        self.base = base
        self.page = context.new_page()
        self.dialogs: list[str] = []
        self.csp_errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", self._console)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.csp_errors.append(f"{message.text} at {message.location}")

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str, full_page: bool = False) -> Path:
        path = ARTIFACTS / f"e2e-{name}.png"
        self.page.screenshot(path=path, full_page=full_page)
        return path


@pytest.fixture
def open_session(browser, server, transactional_db):
    """Open pages: open_session(user=None, **context_options) -> Session."""
    contexts = []

    def opened(user=None, **options) -> Session:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(**options)
        contexts.append(context)
        if user is not None:
            context.add_cookies(
                [{"name": "sessionid", "value": session_cookie(user), "url": server}]
            )
        return Session(context, server)

    yield opened
    for context in contexts:
        context.close()


@pytest.fixture
def alice_user(transactional_db) -> User:
    return User.objects.create_user("alice", password="correct horse battery")
