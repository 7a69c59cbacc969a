"""
Shared fixtures. The cast:
- alice: a user with conversations of her own, logged in for the API tests;
- bob: another user, who must never see or touch alice's things;
- the upstream: a fake OpenAI-compatible server on 127.0.0.1, reached through the real SDK.
"""

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest
from django.test import Client
from django.utils import timezone

from chat import generation, services
from chat.models import Conversation, Generation, Message
from tests.asgi_client import AsgiClient
from tests.fakeopenai import FakeOpenAI


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    """Start every test with an empty cache: no answers, no rate counters."""
    cache.clear()


@pytest.fixture(params=["locmem", "redis"])
def any_cache(request, settings) -> str:
    """Run the test once with the local-memory cache and once with django-redis."""
    if request.param == "redis":
        settings.CACHES = {
            "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url()}
        }
    cache.clear()
    return request.param


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


def redis_url() -> str:
    """Return the test Redis server's URL; skip the test, or fail in CI, without one."""
    url = os.environ.get("CHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Redis at {url}: {exc}")
        pytest.skip(f"no Redis at {url} ({exc}); set CHAT_TEST_REDIS_URL")
    return url


@pytest.fixture(params=["memory", "redis"])
def event_log(request, settings) -> str:
    """Run the test once with each event log backend."""
    if request.param == "redis":
        settings.REDIS_URL = redis_url()
    settings.CHAT_EVENT_LOG = request.param
    return request.param


@pytest.fixture
def upstream(fake_openai: FakeOpenAI, settings, event_log) -> FakeOpenAI:
    """Point the project at the fake OpenAI server, as OPENAI_BASE_URL would."""
    fake_openai.reset()
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_API_KEY = "sk-test-key"
    settings.CHAT_DEMO = False
    settings.CHAT_MODEL = "gpt-test"
    settings.CHAT_MODELS = ["gpt-test", "gpt-other"]
    settings.CHAT_UPSTREAM_MAX_RETRIES = 0
    settings.CHAT_UPSTREAM_READ_TIMEOUT = 5.0
    return fake_openai


@pytest.fixture
def alice(transactional_db) -> User:
    return User.objects.create_user("alice", "alice@example.com", "correct horse battery")


@pytest.fixture
def bob(transactional_db) -> User:
    return User.objects.create_user("bob", "bob@example.com", "correct horse battery")


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def held_by_requests(opened: list[BaseDatabaseWrapper]) -> list[BaseDatabaseWrapper]:
    """The connections of `opened` still open, but for those SQLite keeps on the event
    loop's few worker threads (chat/db.py): a bounded number, not one per request."""
    workers = {t.ident for t in threading.enumerate() if t.name.startswith("asyncio_")}
    return [
        c
        for c in opened
        if c.connection is not None and not (c.vendor == "sqlite" and c._thread_ident in workers)
    ]


async def logged_in_as(request: HttpRequest, user: User) -> HttpRequest:
    """Give a request made by a RequestFactory the user's session, as Django's session
    middleware would."""
    key = await sync_to_async(session_cookie)(user)
    request.COOKIES[django_settings.SESSION_COOKIE_NAME] = key
    request.session = SessionStore(session_key=key)
    return request


@pytest.fixture
async def api(alice: User, settings) -> AsyncIterator[AsgiClient]:
    """Alice's client on the real ASGI application; her answers finish before teardown.

    It takes `settings` so that the tests' settings are restored only after that.
    """
    yield AsgiClient(await sync_to_async(session_cookie)(alice))
    await asyncio.wait_for(generation.wait_all(), 10)
    # The test's own async ORM calls ran on asgiref's shared thread: close its connection.
    await sync_to_async(connections.close_all)()


@pytest.fixture
async def bob_api(bob: User) -> AsyncIterator[AsgiClient]:
    yield AsgiClient(await sync_to_async(session_cookie)(bob))
    await sync_to_async(connections.close_all)()


@pytest.fixture
def demo_model(settings) -> None:
    """The offline demo model, as with no OPENAI_* variable set; fast and deterministic."""
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    settings.CHAT_DEMO = True
    settings.CHAT_MODEL = "demo"
    settings.CHAT_MODELS = ["demo"]
    settings.CHAT_DEMO_TOKEN_DELAY = 0.0


async def unstarted_answer(conversation: Conversation, content: str = "Hi") -> Generation:
    """An answer saved and admitted, but never started: as if its process had died at once."""
    # The rows and the streaming slot of services.message_post, without the start.
    _, unstarted = await sync_to_async(services._message_post)(
        conversation, content, services.Asker("", None)
    )
    return unstarted


def add_message(conversation: Conversation, **fields) -> Message:
    """Add a message after the branch on screen, and put it on screen, as a post does."""
    message = Message.objects.create(
        conversation=conversation, parent_id=conversation.current_leaf_id, **fields
    )
    conversation.current_leaf = message
    conversation.save(update_fields=["current_leaf"])
    return message


def finished_exchange(owner: User) -> tuple[Conversation, Message, Generation]:
    """A conversation of the owner's: a question and its finished answer, as the demo gave it."""
    conversation = Conversation.objects.create(owner=owner, title="Tides", model="demo")
    add_message(conversation, role="user", content="Hello?")
    answer = add_message(
        conversation, role="assistant", content="Hello there.", finish_reason="stop"
    )
    finished = Generation.objects.create(
        message=answer,
        conversation=conversation,
        model="demo",
        request={"model": "demo", "messages": [{"role": "user", "content": "Hello?"}]},
        event_layout=[6, 6],
        last_event_id=3,
        finished_at=timezone.now(),
    )
    return conversation, answer, finished
