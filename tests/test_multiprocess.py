"""Several server processes sharing Redis and the database, as in production."""

import asyncio
import contextlib
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import psycopg
import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections

from chat import limits
from chat.models import Message, Usage
from tests.asgi_client import CSRF_TOKEN, parse_events
from tests.conftest import redis_url, session_cookie
from tests.fakeopenai import Reply
from tests.servers import daphne, database_url, free_port, serve
from tests.waiting import until

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


def server_env(fake_openai) -> dict[str, str]:
    return {
        # The same key as the suite's: the sessions it makes must be valid there.
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url(),
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_API_KEY": "sk-test-key",
        "CHAT_MODEL": "gpt-test",
        "CHAT_MODELS": "gpt-test",
        "CHAT_UPSTREAM_MAX_RETRIES": "0",
        # The producer's alive mark lives three intervals, at least a second: 0.5 gives
        # 2 s, so a cold process's first answer on a loaded machine is not taken for dead.
        "CHAT_LIVENESS_INTERVAL": "0.5",
        "CHAT_SWEEP_INTERVAL": "0",
        "CHAT_CACHE_TTL": "0",  # every answer comes from the model: these tests stream
        "LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def serving_twice(env: dict[str, str]):
    """Two processes, A and B, on their own ports, sharing Redis and the database."""
    a, b = free_port(), free_port()
    with daphne(a, env), daphne(b, env):
        yield f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}"


@pytest.fixture(scope="module")
def two_servers(django_db_setup, django_db_blocker, fake_openai):
    with django_db_blocker.unblock():
        env = server_env(fake_openai)
    with serving_twice(env) as servers:
        yield servers


@pytest.fixture(scope="module")
def two_limited_servers(django_db_setup, django_db_blocker, fake_openai):
    """Two processes whose users may send 3 messages an hour and stream 2 answers at once.

    An hourly window: a test crossing a minute boundary would see its counter reset.
    """
    with django_db_blocker.unblock():
        env = server_env(fake_openai)
    with serving_twice(
        {**env, "CHAT_RATE_LIMITS": "3/hour", "CHAT_MAX_CONCURRENT": "2"}
    ) as servers:
        yield servers


class Browser:
    """One logged-in user's HTTP client, free to talk to any of the servers."""

    def __init__(self, session: str) -> None:
        self.client = httpx2.AsyncClient(
            cookies={"sessionid": session, "csrftoken": CSRF_TOKEN},
            headers={"X-CSRFToken": CSRF_TOKEN},
            timeout=10,
        )

    async def conversation(self, server: str) -> str:
        return (await self.client.post(f"{server}/api/conversations/", json={})).json()["id"]

    async def post(self, server: str, conversation: str, prompt: str) -> httpx2.Response:
        return await self.client.post(
            f"{server}/api/conversations/{conversation}/messages/", json={"content": prompt}
        )

    async def ask(self, server: str, prompt: str) -> dict:
        response = await self.post(server, await self.conversation(server), prompt)
        assert response.status_code == 202, response.text
        return response.json()["generation"]

    async def events(self, server: str, generation: dict, after: int = 0, count: int | None = None):
        """Read the stream from a server: all of it, or until `count` events arrived."""
        raw = b""
        async with self.client.stream(
            "GET",
            f"{server}{generation['stream_url']}",
            headers={"Last-Event-ID": str(after)},
        ) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_bytes():
                raw += chunk
                events, _ = parse_events(raw)
                if count is not None and len(events) >= count:
                    return events[:count]
        return parse_events(raw)[0]


@pytest.fixture
async def browser(alice):
    browser = Browser(await sync_to_async(session_cookie)(alice))
    yield browser
    await browser.client.aclose()


@pytest.fixture
def fresh_limits(alice) -> None:
    """Forget alice's counters in Redis: a user of an earlier run may have had her id."""
    with redis.Redis.from_url(redis_url()) as client:
        patterns = (f"*:chat:rate:{alice.pk}:*", f"*:chat:streaming:{alice.pk}")
        keys = [key for pattern in patterns for key in client.scan_iter(pattern)]
        if keys:
            client.delete(*keys)


def text_of(events) -> str:
    return "".join(e.data["content"] for e in events if e.event == "delta")


async def answer(generation: dict) -> Message:
    return await Message.objects.aget(generation__pk=generation["id"])


async def test_an_answer_posted_to_one_process_streams_from_another(
    two_servers, browser, fake_openai
):
    a, b = two_servers
    fake_openai.reset()
    fake_openai.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(30)], token_delay=0.01))

    generation = await browser.ask(a, "Hi")
    events = await browser.events(b, generation)

    assert [e.id for e in events] == list(range(1, 32))
    assert events[-1].event == "done"
    assert (
        text_of(events)
        == (await answer(generation)).content
        == "".join(f"w{i} " for i in range(30))
    )


async def test_a_reader_resumes_on_another_process(two_servers, browser, fake_openai):
    a, b = two_servers
    fake_openai.reset()
    fake_openai.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(30)], token_delay=0.02))

    generation = await browser.ask(a, "Hi")
    first = await browser.events(b, generation, count=5)
    rest = await browser.events(a, generation, after=first[-1].id)

    assert [e.id for e in first + rest] == list(range(1, 32))
    assert text_of(first + rest) == (await answer(generation)).content


async def test_reasoning_and_tool_events_cross_processes_and_match_the_store(
    two_servers, browser, fake_openai
):
    a, b = two_servers
    fake_openai.reset()
    function = {"name": "calculator", "arguments": '{"expression": "6*7"}'}
    thinks = [{"reasoning": f"r{i} "} for i in range(10)]
    call = {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": function}]}
    then = Reply(tokens=[f"w{i} " for i in range(10)], token_delay=0.02)
    fake_openai.reply_to(
        "Tool",
        Reply(
            tokens=[*thinks, call], token_delay=0.02, finish_reason="tool_calls", after_tools=then
        ),
    )

    generation = await browser.ask(a, "Tool")
    first = await browser.events(b, generation, count=5)
    rest = await browser.events(a, generation, after=first[-1].id)

    events = first + rest
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    stored = await answer(generation)
    assert "".join(e.data["content"] for e in events if e.event == "reasoning") == stored.reasoning
    assert [e.data for e in events if e.event == "tool_end"] == [
        {"id": "call_1", "name": "calculator", "result": {"value": 42}}
    ]
    assert stored.tool_calls == [
        {
            "id": "call_1",
            "name": "calculator",
            "arguments": {"expression": "6*7"},
            "result": {"value": 42},
        }
    ]
    assert text_of(events) == stored.content == "".join(f"w{i} " for i in range(10))


async def test_a_cancel_sent_to_another_process_stops_the_answer_upstream(
    two_servers, browser, fake_openai
):
    a, b = two_servers
    fake_openai.reset()
    fake_openai.reply_to("Hi", Reply(tokens=["w "] * 500, token_delay=0.02))

    generation = await browser.ask(a, "Hi")
    await browser.events(a, generation, count=2)
    response = await browser.client.post(f"{b}{generation['cancel_url']}")
    events = await browser.events(b, generation)

    assert response.status_code == 202
    assert (events[-1].event, events[-1].data["finish_reason"]) == ("done", "cancelled")
    await asyncio.to_thread(fake_openai.wait_until, lambda: fake_openai.aborted == 1)
    message = await answer(generation)
    assert (message.status, message.content) == ("cancelled", text_of(events))


async def test_when_the_owning_process_dies_readers_get_an_error_and_every_word_is_kept(
    two_servers, browser, fake_openai, django_db_blocker
):
    a, _ = two_servers
    fake_openai.reset()
    fake_openai.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(500)], token_delay=0.02))
    with django_db_blocker.unblock():
        env = server_env(fake_openai)
    port = free_port()
    with daphne(port, env) as doomed:
        generation = await browser.ask(f"http://127.0.0.1:{port}", "Hi")
        seen = await browser.events(a, generation, count=5)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(5)
        rest = await asyncio.wait_for(browser.events(a, generation, after=seen[-1].id), 10)

    events = seen + rest
    message = await answer(generation)
    assert (events[-1].event, events[-1].data["code"]) == ("error", "interrupted")
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert text_of(events) == message.content
    assert (message.status, message.error_code) == ("error", "interrupted")
    assert len(events) > 5


async def stop_mid_answer(browser, env: dict[str, str], *, reader_on: str):
    """Post to a production worker, read a little, SIGTERM it; resume on `reader_on`."""
    port = free_port()
    with serve(port, {**env, "SERVE_DRAIN_SECONDS": "1"}) as worker:
        generation = await browser.ask(f"http://127.0.0.1:{port}", "Hi")
        seen = await browser.events(f"http://127.0.0.1:{port}", generation, count=5)
        worker.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(browser.events(reader_on, generation, after=5), 20)
        exit_code = await asyncio.to_thread(worker.wait, 20)
    # uvicorn ends a clean shutdown by raising the signal it caught again.
    assert exit_code == -signal.SIGTERM
    return generation, seen + rest


async def test_a_worker_told_to_stop_finishes_its_answers_within_the_grace(
    two_servers, browser, fake_openai, django_db_blocker
):
    a, _ = two_servers
    fake_openai.reset()
    words = [f"w{i} " for i in range(60)]
    fake_openai.reply_to("Hi", Reply(tokens=words, token_delay=0.03))
    with django_db_blocker.unblock():
        env = {**server_env(fake_openai), "CHAT_SHUTDOWN_GRACE": "20"}

    generation, events = await stop_mid_answer(browser, env, reader_on=a)

    assert [e.id for e in events] == list(range(1, 62))
    assert (events[-1].event, events[-1].data["finish_reason"]) == ("done", "stop")
    assert text_of(events) == (await answer(generation)).content == "".join(words)


async def test_a_worker_past_its_grace_stores_the_rest_as_interrupted(
    two_servers, browser, fake_openai, django_db_blocker
):
    a, _ = two_servers
    fake_openai.reset()
    fake_openai.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(1000)], token_delay=0.02))
    with django_db_blocker.unblock():
        env = {**server_env(fake_openai), "CHAT_SHUTDOWN_GRACE": "0.5"}

    started = time.monotonic()
    generation, events = await stop_mid_answer(browser, env, reader_on=a)

    message = await answer(generation)
    assert time.monotonic() - started < 15  # the 1 s drain and 0.5 s grace, not a 20 s answer
    assert (events[-1].event, events[-1].data["code"]) == ("error", "interrupted")
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert (message.status, message.error_code) == ("error", "interrupted")
    assert text_of(events) == message.content and len(events) > 6
    # Ended by the worker itself, not settled after its death: its tokens are accounted.
    assert await Usage.objects.filter(generation=generation["id"]).aexists()
    await asyncio.to_thread(fake_openai.wait_until, lambda: fake_openai.aborted == 1)


async def test_a_client_vanishing_mid_frame_harms_neither_the_answer_nor_the_server(
    two_servers, browser, fake_openai
):
    a, _ = two_servers
    fake_openai.reset()
    fake_openai.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(40)], token_delay=0.01))
    generation = await browser.ask(a, "Hi")
    host, port = a.removeprefix("http://").split(":")
    cookies = "; ".join(f"{c.name}={c.value}" for c in browser.client.cookies.jar)

    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET {generation['stream_url']} HTTP/1.1\r\nHost: {host}\r\n"
        f"Cookie: {cookies}\r\n\r\n".encode()
    )
    await writer.drain()
    received = await reader.readuntil(b'event: delta\ndata: {"con')  # inside a frame
    writer.transport.abort()  # a reset, not a polite close

    events = await browser.events(a, generation)
    assert b"200 OK" in received
    assert events[-1].event == "done"
    assert text_of(events) == (await answer(generation)).content


def assert_refused(response: httpx2.Response, code: str, longest_wait: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == code
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and 0 < int(retry_after) <= longest_wait


async def test_the_message_rate_limit_holds_across_two_processes(
    two_limited_servers, browser, fresh_limits, fake_openai
):
    a, b = two_limited_servers
    fake_openai.reset()
    for server in (a, b, a):  # each answer read to its end: only the rate limit can refuse
        await browser.events(server, await browser.ask(server, "Hi"))

    refused = [await browser.post(s, await browser.conversation(s), "Hi") for s in (b, a)]

    for response in refused:
        assert_refused(response, "rate_limited", longest_wait=3600)


async def test_answers_streaming_at_once_are_capped_across_two_processes(
    two_limited_servers, browser, fresh_limits, fake_openai
):
    a, b = two_limited_servers
    fake_openai.reset()
    fake_openai.reply_to("slow", Reply(tokens=["a "] * 500, token_delay=0.02))
    servers = [a, b, a, b, a]
    conversations = [await browser.conversation(server) for server in servers]

    responses = await asyncio.gather(
        *[browser.post(s, c, "slow") for s, c in zip(servers, conversations, strict=True)]
    )

    assert sorted(r.status_code for r in responses) == [202, 202, 429, 429, 429]
    for server, response in zip(servers, responses, strict=True):
        if response.status_code == 429:
            assert_refused(response, "too_many_streams", longest_wait=5)
            continue
        generation = response.json()["generation"]
        await browser.client.post(f"{server}{generation['cancel_url']}")
        assert (await browser.events(server, generation))[-1].event == "done"


def admit_at_once(user, clients: int) -> list[str]:
    """limits.admit(user) from many threads released together: each one's outcome, sorted.

    Each thread is a cache client of its own, as server processes are. (Over HTTP, SQLite's
    write lock serialises admissions even across processes; PostgreSQL's does not.)
    """
    start = threading.Barrier(clients)

    def attempt(_: int) -> str:
        start.wait()
        try:
            limits.admit(user)
        except limits.LimitExceeded as exc:
            return exc.code
        return "admitted"

    with ThreadPoolExecutor(clients) as pool:
        return sorted(pool.map(attempt, range(clients)))


def test_streaming_slots_are_counted_atomically_when_many_clients_ask_at_once(
    settings, alice, any_cache
):
    settings.CHAT_MAX_CONCURRENT = 2
    settings.CHAT_RATE_LIMITS = {}

    first = admit_at_once(alice, 10)
    limits.release(alice.pk)
    limits.release(alice.pk)
    second = admit_at_once(alice, 10)

    # The refused took no slot: the two released are all there is to take again.
    assert first == second == ["admitted"] * 2 + ["too_many_streams"] * 8


def test_messages_are_counted_atomically_when_many_clients_ask_at_once(settings, alice, any_cache):
    settings.CHAT_MAX_CONCURRENT = 20
    settings.CHAT_RATE_LIMITS = {"hour": 2}

    assert admit_at_once(alice, 10) == ["admitted"] * 2 + ["rate_limited"] * 8


@contextlib.asynccontextmanager
async def pooled_server(fake_openai, size: int, wait: float):
    """One worker whose PostgreSQL pool holds `size` connections, each waited for `wait` s."""
    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's (DATABASE_URL=postgres://...)")
    env = {
        **server_env(fake_openai),
        "CHAT_DB_POOL_MIN": "1",
        "CHAT_DB_POOL_MAX": str(size),
        "CHAT_DB_POOL_TIMEOUT": str(wait),
        "CHAT_MAX_CONCURRENT": "100",
    }
    port = free_port()
    await sync_to_async(connections.close_all)()  # the test database is dropped after
    with serve(port, env):
        yield f"http://127.0.0.1:{port}"


async def test_more_requests_at_once_than_the_pool_has_connections_all_answer(fake_openai, browser):
    # A request whose database work waited for a second connection while it held one
    # would wait forever once every pooled connection was held so (here: 2 of them).
    async with pooled_server(fake_openai, size=2, wait=5) as server:
        conversations = [await browser.conversation(server) for _ in range(8)]
        posted = await asyncio.gather(
            *(browser.post(server, conversation, "Hi") for conversation in conversations)
        )

    assert [response.status_code for response in posted] == [202] * 8


async def test_a_request_that_gets_no_pooled_connection_in_time_is_refused_with_503(
    fake_openai, browser
):
    async with pooled_server(fake_openai, size=1, wait=0.5) as server:
        locker = psycopg.connect(database_url())
        held, other = await browser.conversation(server), await browser.conversation(server)
        # The first post waits for this row inside its transaction, holding the pool's
        # one connection meanwhile.
        locker.execute("SELECT 1 FROM chat_conversation WHERE id = %s FOR UPDATE", [held])
        first = asyncio.create_task(browser.post(server, held, "Hi"))
        await until(lambda: asyncio.to_thread(waiting_on_a_lock, locker))

        refused = await browser.post(server, other, "Hello")
        locker.close()  # ends its transaction: the row is free
        admitted = await first

    assert (refused.status_code, refused.headers["retry-after"]) == (503, "2")
    assert refused.json()["error"]["code"] == "busy_server"
    assert admitted.status_code == 202


def waiting_on_a_lock(watcher: psycopg.Connection) -> bool:
    found = watcher.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %s",
        [watcher.info.backend_pid],
    ).fetchone()
    return bool(found and found[0])
