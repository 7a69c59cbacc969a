"""Answers outlive their readers, their event store's failures and their process."""

import asyncio
import contextlib
import random
import socket
import sqlite3
import subprocess
import time
from datetime import timedelta

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from chat import ending, generation, sweeper
from chat.answer import Answer
from chat.eventlog import get_event_log
from chat.events import Part
from chat.models import Conversation, Generation, Message
from tests.asgi_client import parse_events, read_events, read_until
from tests.conftest import unstarted_answer
from tests.fakeopenai import Reply
from tests.servers import database_url
from tests.test_stream import ask, stored_answer, stream, text_of
from tests.waiting import until

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


async def test_an_answer_nobody_reads_is_abandoned(api, upstream, settings):
    settings.CHAT_ABANDON_AFTER = 0.2
    settings.CHAT_LIVENESS_INTERVAL = 0.05
    upstream.reply_to("Hi", Reply(tokens=["a "] * 200, token_delay=0.02))

    posted = await ask(api, "Hi")
    await generation.wait_all()

    message = await stored_answer(posted)
    assert (message.status, message.finish_reason) == ("cancelled", "cancelled")
    await asyncio.to_thread(upstream.wait_until, lambda: upstream.aborted == 1)


async def test_a_connected_reader_keeps_the_answer_going(api, upstream, settings):
    settings.CHAT_ABANDON_AFTER = 0.2
    settings.CHAT_LIVENESS_INTERVAL = 0.05
    settings.CHAT_SSE_HEARTBEAT = 0.05
    upstream.reply_to("Hi", Reply(tokens=["a "] * 20, token_delay=0.03))

    posted = await ask(api, "Hi")
    events = await read_events(await stream(api, posted))

    assert events[-1].data["finish_reason"] == "stop"
    assert text_of(events) == "a " * 20


async def test_the_sweeper_ends_answers_whose_process_is_gone(api, upstream, alice, settings):
    conversation = await Conversation.objects.acreate(owner=alice, model="gpt-test")
    lost = await unstarted_answer(conversation)
    await Generation.objects.filter(pk=lost.pk).aupdate(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    await Message.objects.filter(pk=lost.message.pk).aupdate(content="partial")
    await Generation.objects.filter(pk=lost.pk).aupdate(event_layout=[4, 3])
    posted = await ask(api, "still running")  # a live answer in another conversation

    assert await sweeper.sweep() == 1

    message = await Message.objects.aget(pk=lost.message.pk)
    assert (message.status, message.error_code, message.content) == (
        "error",
        "interrupted",
        "partial",
    )
    events = await read_events(await api.get(lost.get_stream_url()))
    assert [(e.id, e.event) for e in events] == [(1, "delta"), (2, "delta"), (3, "error")]
    assert text_of(events) == "partial"
    assert (await stored_answer(posted)).status in ("streaming", "complete")


async def test_the_streaming_slot_of_an_answer_whose_process_is_gone_is_given_back(
    api, upstream, alice, settings
):
    settings.CHAT_MAX_CONCURRENT = 1
    conversation = await Conversation.objects.acreate(owner=alice, model="gpt-test")
    # Admitted, then never run: as if its process had died holding the user's one slot.
    lost = await unstarted_answer(conversation)
    await Generation.objects.filter(pk=lost.pk).aupdate(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    other = await (await api.post("/api/conversations/", {})).json()
    url = f"/api/conversations/{other['id']}/messages/"
    refused = await api.post(url, {"content": "Next"})

    assert await sweeper.sweep() == 1

    assert refused.status == 429
    assert (await api.post(url, {"content": "Next"})).status == 202


@contextlib.contextmanager
def database_locked():
    """Another client holding the database's write lock, as a long migration or backup would."""
    config = connection.settings_dict
    if config["ENGINE"] == "django.db.backends.sqlite3":
        other = sqlite3.connect(config["NAME"], isolation_level=None)
        lock = "BEGIN EXCLUSIVE"
    else:
        other = psycopg.connect(database_url(), autocommit=False)
        # In the order an answer's writes take them (its generation, then its message):
        # a checkpoint caught between the two finishes first instead of deadlocking.
        lock = "LOCK TABLE chat_generation, chat_message IN ACCESS EXCLUSIVE MODE"
    try:
        other.execute(lock)
        yield
    finally:
        other.rollback()
        other.close()


async def test_an_answer_ending_while_the_database_is_locked_is_stored_once_it_is_free(
    api, upstream
):
    posted, reader, raw = await _a_first_token_read(api, upstream, token_delay=0.02)

    with database_locked():
        # The model finishes meanwhile; its outcome waits for the lock.
        await asyncio.to_thread(upstream.wait_until, lambda: upstream.completed == 1)
        log, key = get_event_log(), posted["generation"]["id"]
        await until(lambda: _logged_all(log, key, len(WORDS)))
        # Every delta is out, but not `done`, which follows the stored outcome.
        assert await log.last_id(key) == len(WORDS)

    await _read_to_the_stored_end(reader, raw, posted)
    assert (await ask(api, "Next")) is not None  # and the next question is taken


async def test_an_answer_relays_on_while_its_checkpoint_waits_for_a_locked_database(
    api, upstream, settings
):
    settings.CHAT_CHECKPOINT_INTERVAL = 0  # a checkpoint due after every part
    posted, reader, raw = await _a_first_token_read(api, upstream, token_delay=0.05)

    with database_locked():
        log, key = get_event_log(), posted["generation"]["id"]
        assert await log.last_id(key) < len(WORDS)  # tokens are still to come
        # The checkpoints wait for the lock; the tokens do not wait for them.
        await until(lambda: _logged_all(log, key, len(WORDS)))

    await _read_to_the_stored_end(reader, raw, posted)


WORDS = [f"w{i} " for i in range(20)]


async def _a_first_token_read(api, upstream, token_delay: float):
    """An answer of WORDS asked for, its stream open and its first token read."""
    upstream.reply_to("Hi", Reply(tokens=WORDS, token_delay=token_delay))
    posted = await ask(api, "Hi")
    reader = await stream(api, posted)
    _, raw = await read_until(reader, 1)
    return posted, reader, raw


async def _read_to_the_stored_end(reader, raw: bytes, posted) -> None:
    """Read the stream to its end: `done`, and the whole answer stored."""
    async for chunk in reader.chunks():
        raw += chunk
    events, _ = parse_events(raw)
    assert (events[-1].event, events[-1].data["finish_reason"]) == ("done", "stop")
    message = await stored_answer(posted)
    assert (message.status, message.content) == ("complete", "".join(WORDS))


async def _logged_all(log, key: str, count: int) -> bool:
    return await log.last_id(key) >= count


async def test_a_checkpoint_after_a_reader_ended_the_answer_changes_nothing(api, upstream, alice):
    conversation = await Conversation.objects.acreate(owner=alice, model="gpt-test")
    slow = await unstarted_answer(conversation)
    # A reader finds the producer silent and ends the answer as interrupted...
    ended = await ending.settle(slow.pk)

    # ...then the producer, only slow, checkpoints what it has.
    late = Answer.of([Part.text("late "), Part.text("words")])
    await sync_to_async(generation.save_checkpoint)(slow, late)

    message = await Message.objects.aget(pk=slow.message.pk)
    stored = await Generation.objects.aget(pk=slow.pk)
    assert (message.status, message.content) == ("error", ended.message.content)
    assert (stored.event_layout, stored.last_event_id) == (ended.event_layout, 1)


async def test_a_slow_producer_ended_by_a_reader_gives_back_its_slot_once(api, upstream, settings):
    settings.CHAT_MAX_CONCURRENT = 2
    upstream.reply_to("slow", Reply(tokens=["a "] * 10, token_delay=0.05))
    upstream.reply_to("other", Reply(tokens=["b "] * 100, token_delay=0.05))
    upstream.reply_to("third", Reply(tokens=["c "] * 100, token_delay=0.05))
    slow = await ask(api, "slow")
    other = await ask(api, "other")  # holds the user's second slot throughout
    reader = await stream(api, slow)
    await read_until(reader, 1)

    # A reader finds the producer silent and ends the answer; the producer is only slow.
    settled = await ending.settle(slow["generation"]["id"])
    events = await read_events(reader)
    # The producer goes on until its next append finds the log ended, then ends too.
    await until(lambda: len(generation._running) == 1)  # only other's producer left
    assert (await stored_answer(other)).is_streaming

    # One slot is held (other's): one more answer is admitted, a second is not.
    third = await (await api.post("/api/conversations/", {})).json()
    fourth = await (await api.post("/api/conversations/", {})).json()
    admitted = await api.post(f"/api/conversations/{third['id']}/messages/", {"content": "third"})
    refused = await api.post(f"/api/conversations/{fourth['id']}/messages/", {"content": "4"})
    assert (admitted.status, refused.status) == (202, 429)

    terminal = [e for e in events if e.event in ("done", "error")]
    assert [(e.event, e.data["code"]) for e in terminal] == [("error", "interrupted")]
    assert events[-1] == terminal[0]
    message = await stored_answer(slow)
    assert (message.status, message.content) == ("error", settled.message.content)
    replayed = await read_events(await stream(api, slow))
    assert replayed[-1] == terminal[0]
    for running in (other, await admitted.json()):
        await api.post(running["generation"]["cancel_url"], {})


async def test_an_admin_can_stop_running_answers(api, upstream):
    upstream.reply_to("Hi", Reply(tokens=["a "] * 200, token_delay=0.02))
    posted = await ask(api, "Hi")
    await asyncio.to_thread(upstream.wait_until, lambda: upstream.requests)

    def stop_from_the_admin() -> int:
        client = Client()
        client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
        listed = client.get("/admin/chat/generation/", {"state": "running"})
        assert len(listed.context["cl"].result_list) == 1
        return client.post(
            "/admin/chat/generation/",
            {"action": "cancel", "_selected_action": [posted["generation"]["id"]]},
        ).status_code

    assert await sync_to_async(stop_from_the_admin)() == 302
    await generation.wait_all()

    assert (await stored_answer(posted)).status == "cancelled"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def private_redis(port: int):
    """A Redis server of this test's own, which it may stop and start."""
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.02)
        yield process
    finally:
        process.terminate()
        process.wait(5)


@pytest.fixture
def redis_server():
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode:
        pytest.skip("redis-server is not installed")
    return free_port()


async def test_an_answer_survives_its_event_store_restarting(api, upstream, settings, redis_server):
    settings.CHAT_EVENT_LOG = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{redis_server}/0"
    upstream.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(100)], token_delay=0.02))

    with private_redis(redis_server) as server:
        posted = await ask(api, "Hi")
        reader = await stream(api, posted)
        seen, raw = await read_until(reader, 3)
        server.terminate()
        server.wait(5)
        async for chunk in reader.chunks():  # the stream ends instead of hanging
            raw += chunk
        await generation.wait_all()

    with private_redis(redis_server):
        before, _ = parse_events(raw)
        after = await read_events(
            await stream(api, posted, **{"Last-Event-ID": str(before[-1].id)})
        )

    message = await stored_answer(posted)
    assert (message.status, message.error_code) == ("error", "event_log")
    assert [e.id for e in before + after] == list(range(1, after[-1].id + 1))
    assert text_of(before + after) == message.content
    assert after[-1].event == "error"
    assert len(seen) >= 3


async def test_a_stream_of_an_unreachable_event_store_answers_503(api, upstream, alice, settings):
    conversation = await Conversation.objects.acreate(owner=alice, model="gpt-test")
    running = await unstarted_answer(conversation)
    settings.CHAT_EVENT_LOG = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    response = await api.get(running.get_stream_url())

    assert response.status == 503
    assert response.headers["retry-after"] == "2"
    assert (await response.json())["error"]["code"] == "event_log_unavailable"


async def test_readers_mark_themselves_present(api, upstream):
    upstream.reply_to("Hi", Reply(tokens=["a "] * 20, token_delay=0.02, first_token_delay=0.1))
    posted = await ask(api, "Hi")
    key = posted["generation"]["id"]
    opened = await get_event_log().last_read(key)

    reader = await stream(api, posted)
    await read_until(reader, 1)

    assert await get_event_log().last_read(key) > opened
    await reader.body()


@pytest.mark.parametrize("seed", range(6))
async def test_random_disconnects_and_reconnects_lose_and_repeat_nothing(api, upstream, seed):
    rng = random.Random(seed)
    pieces = ["a", "bb ", "é", "日本", "🎉", " ", "\n", "x y", "\u200b", "ü"]
    tokens = [rng.choice(pieces) for _ in range(rng.randint(5, 40))]
    upstream.reply_to("Hi", Reply(tokens=tokens, token_delay=0.005))
    posted = await ask(api, "Hi")

    received = []
    while not received or received[-1].event == "delta":
        last = str(received[-1].id) if received else "0"
        reader = await stream(api, posted, **{"Last-Event-ID": last})
        want = rng.randint(1, 8)
        raw = b""
        async for chunk in reader.chunks():
            raw += chunk
            if len(parse_events(raw)[0]) >= want:
                break
        received += parse_events(raw)[0]
        if received[-1].event == "delta":
            await reader.disconnect()

    assert [e.id for e in received] == list(range(1, len(tokens) + 2))
    assert text_of(received) == "".join(tokens) == (await stored_answer(posted)).content


async def test_deleting_a_conversation_ends_its_open_streams_and_frees_its_slot(
    api, upstream, settings
):
    settings.CHAT_MAX_CONCURRENT = 1
    upstream.reply_to("Hi", Reply(tokens=["a "] * 200, token_delay=0.02))
    posted = await ask(api, "Hi")
    reader = await stream(api, posted)
    _, raw = await read_until(reader, 2)

    conversation = (await stored_answer(posted)).conversation_id
    assert (await api.request("DELETE", f"/api/conversations/{conversation}/")).status == 204
    async for chunk in reader.chunks():  # ends instead of pinging forever
        raw += chunk

    # Stopped before the rows went (done, cancelled), or found deleted (error, not_found).
    last = parse_events(raw)[0][-1]
    assert (last.event, last.data.get("finish_reason") or last.data.get("code")) in (
        ("done", "cancelled"),
        ("error", "not_found"),
    )
    # Its one streaming slot came back, whichever way it ended: the next answer starts.
    await until(lambda: not generation._running)
    again = await ask(api, "Hi")
    await api.post(again["generation"]["cancel_url"])


async def test_a_finished_answer_replays_while_the_event_store_is_down(api, upstream, settings):
    posted = await ask(api, "one two")
    live = await read_events(await stream(api, posted))
    settings.CHAT_EVENT_LOG = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    assert await read_events(await stream(api, posted)) == live


async def test_a_post_while_the_event_store_is_down_is_refused_and_frees_the_conversation(
    api, upstream, settings
):
    conversation = await (await api.post("/api/conversations/", {})).json()
    settings.CHAT_EVENT_LOG = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    url = f"/api/conversations/{conversation['id']}/messages/"

    refused = await api.post(url, {"content": "Hi"})
    settings.CHAT_EVENT_LOG = "memory"
    again = await api.post(url, {"content": "Hi again"})

    assert (refused.status, (await refused.json())["error"]["code"]) == (
        503,
        "event_log_unavailable",
    )
    assert again.status == 202
    failed = await Message.objects.filter(role="assistant").order_by("created_at").afirst()
    assert failed.status == "error"


def test_the_sweep_command_refuses_to_guess_with_the_memory_log(settings):
    settings.CHAT_EVENT_LOG = "memory"

    with pytest.raises(CommandError, match="only the server"):
        call_command("sweep_generations")


async def test_with_the_event_store_down_a_cancel_is_refused_and_a_delete_still_deletes(
    api, upstream, settings, redis_server
):
    settings.CHAT_EVENT_LOG = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{redis_server}/0"
    # Slow: the answer is waiting for its next token, not ending, when the store goes.
    upstream.reply_to("Hi", Reply(tokens=["a "] * 10, token_delay=2))

    with private_redis(redis_server) as server:
        posted = await ask(api, "Hi")
        await read_until(await stream(api, posted), 1)
        server.terminate()
        server.wait(5)
        conversation = (await stored_answer(posted)).conversation_id
        cancelled = await api.post(posted["generation"]["cancel_url"])
        deleted = await api.request("DELETE", f"/api/conversations/{conversation}/")

    assert (cancelled.status, (await cancelled.json())["error"]["code"]) == (
        503,
        "event_log_unavailable",
    )
    assert deleted.status == 204
    assert not await Conversation.objects.filter(pk=conversation).aexists()
