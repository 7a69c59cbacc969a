"""The JSON API for conversations and messages: resources, validation, auth, ownership."""

import asyncio
import re
import threading
import time

import pytest
from django.db import connection
from django.db.backends.utils import CursorWrapper

from chat import db, generation, services
from chat.models import Conversation, Generation, Message
from chat.transcript import Transcript
from tests.asgi_client import AsgiClient, read_events
from tests.conftest import unstarted_answer
from tests.fakeopenai import Reply

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


async def create(api: AsgiClient, **fields) -> dict:
    response = await api.post("/api/conversations/", fields)
    assert response.status == 201, await response.body()
    return await response.json()


async def counts() -> tuple[int, int, int]:
    return (
        await Conversation.objects.acount(),
        await Message.objects.acount(),
        await Generation.objects.acount(),
    )


async def test_it_creates_a_conversation_with_defaults(api, upstream):
    created = await create(api)

    assert created["model"] == "gpt-test"
    assert (created["title"], created["system_prompt"]) == ("", "")
    stored = await Conversation.objects.select_related("owner").aget(pk=created["id"])
    assert stored.owner.username == "alice"


async def test_it_creates_a_conversation_with_a_chosen_model_and_prompt(api, upstream):
    created = await create(api, title=" Plans ", model="gpt-other", system_prompt="Be brief.")

    assert (created["title"], created["model"], created["system_prompt"]) == (
        "Plans",
        "gpt-other",
        "Be brief.",
    )


async def test_it_lists_only_ones_own_conversations_newest_first(api, bob_api, upstream):
    first = await create(api, title="first")
    second = await create(api, title="second")
    await create(bob_api, title="bob's")

    listed = (await (await api.get("/api/conversations/")).json())["conversations"]

    assert [c["id"] for c in listed] == [second["id"], first["id"]]


async def test_it_shows_a_conversation_with_its_messages(api, upstream):
    created = await create(api)
    posted = await (
        await api.post(f"/api/conversations/{created['id']}/messages/", {"content": "one two"})
    ).json()
    await read_events(await api.get(posted["generation"]["stream_url"]))

    shown = await (await api.get(f"/api/conversations/{created['id']}/")).json()

    assert [(m["role"], m["content"], m["status"]) for m in shown["messages"]] == [
        ("user", "one two", "complete"),
        ("assistant", "Echo: one two", "complete"),
    ]
    assert shown["messages"][0] == posted["message"]


async def test_posting_a_message_answers_202_with_the_generation_urls(api, upstream):
    created = await create(api)

    response = await api.post(f"/api/conversations/{created['id']}/messages/", {"content": "Hi"})
    posted = await response.json()

    assert response.status == 202
    assert posted["message"]["role"] == "user"
    generation_id = posted["generation"]["id"]
    assert posted["generation"]["stream_url"].startswith(
        f"/api/generations/{generation_id}/stream?token="
    )
    assert posted["generation"]["cancel_url"] == f"/api/generations/{generation_id}/cancel"


async def test_the_answer_starts_without_waiting_for_a_reader(api, upstream):
    created = await create(api)
    await api.post(f"/api/conversations/{created['id']}/messages/", {"content": "Hi"})

    await generation.wait_all()

    assert upstream.completed == 1
    answer = await Message.objects.aget(role="assistant")
    assert (answer.status, answer.content) == ("complete", "Echo: Hi")


async def test_a_post_reads_and_writes_its_conversation_in_five_statements(
    api, upstream, monkeypatch
):
    # SQLite's one writer takes posts in turn, and each statement is a longer turn: the
    # post reads its conversation (locked) and its messages, then writes the question with
    # its answer, the conversation, and the generation; no more.
    created = await create(api)
    await api.post(f"/api/conversations/{created['id']}/messages/", {"content": "first"})
    await generation.wait_all()
    upstream.reply_to("second", Reply(tokens=["b"], first_token_delay=0.5))
    statements = []
    execute = CursorWrapper.execute

    def recorded(cursor, sql, params=None):
        table = re.search(r'(?:FROM|INTO|UPDATE) "(chat_\w+)"', sql)
        if table:
            statements.append((sql.split(None, 1)[0], table[1]))
        return execute(cursor, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", recorded)
    response = await api.post(
        f"/api/conversations/{created['id']}/messages/", {"content": "second"}
    )
    monkeypatch.undo()

    assert response.status == 202
    assert statements == [
        ("SELECT", "chat_conversation"),
        ("SELECT", "chat_message"),
        ("INSERT", "chat_message"),
        ("UPDATE", "chat_conversation"),
        ("INSERT", "chat_generation"),
    ]
    await generation.wait_all()
    assert await Message.objects.filter(status="complete").acount() == 4


async def test_of_two_posts_at_once_to_one_conversation_the_second_finds_it_busy(
    api, upstream, monkeypatch
):
    # The second post reads the conversation once the first has committed its answer: on
    # PostgreSQL after waiting for the row lock the first holds, so its read must be a
    # statement of its own, which sees what was committed while it waited.
    created = await create(api)
    upstream.reply_to("one", Reply(tokens=["a"], first_token_delay=0.5))
    upstream.reply_to("two", Reply(tokens=["b"], first_token_delay=0.5))

    class SlowTranscript(Transcript):
        def __init__(self, conversation):
            super().__init__(conversation)
            time.sleep(0.2)  # the lock held, the conversation read: the other post waits

    monkeypatch.setattr(services, "Transcript", SlowTranscript)
    url = f"/api/conversations/{created['id']}/messages/"
    responses = await asyncio.gather(
        api.post(url, {"content": "one"}), api.post(url, {"content": "two"})
    )

    assert sorted(response.status for response in responses) == [202, 409]
    await generation.wait_all()
    assert await Message.objects.acount() == 2


async def test_it_refuses_a_second_message_while_an_answer_streams(api, upstream, alice):
    conversation = await Conversation.objects.acreate(owner=alice, model="gpt-test")
    await unstarted_answer(conversation, "first")
    before = await counts()

    response = await api.post(
        f"/api/conversations/{conversation.pk}/messages/", {"content": "second"}
    )

    assert response.status == 409
    assert (await response.json())["error"]["code"] == "busy"
    assert await counts() == before


async def test_it_deletes_a_conversation(api, upstream):
    created = await create(api)

    response = await api.request("DELETE", f"/api/conversations/{created['id']}/")

    assert response.status == 204
    assert not await Conversation.objects.filter(pk=created["id"]).aexists()


async def test_deleting_a_conversation_stops_its_running_answer(api, upstream):
    upstream.reply_to("Hi", Reply(tokens=["a "] * 100, token_delay=0.05))
    created = await create(api)
    await api.post(f"/api/conversations/{created['id']}/messages/", {"content": "Hi"})
    await asyncio.to_thread(upstream.wait_until, lambda: upstream.requests)

    response = await api.request("DELETE", f"/api/conversations/{created['id']}/")

    assert response.status == 204
    await asyncio.to_thread(upstream.wait_until, lambda: upstream.aborted == 1)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"content": ""}', "empty_field"),
        (b'{"content": "  \\n\\t "}', "empty_field"),
        (b"{}", "empty_field"),
        (b'{"content": 42}', "invalid_field"),
        (b'{"content": ["a"]}', "invalid_field"),
        (b'{"content": null}', "invalid_field"),
        (b'{"content": "' + b"x" * 101 + b'"}', "too_long"),
        (b'{"content": "\\ud800"}', "invalid_text"),
        (b'{"content": "a\\u0000b"}', "invalid_text"),
        (b'{"content": "unterminated', "invalid_json"),
        (b'["content"]', "invalid_json"),
        (b"\xff\xfe not utf-8", "invalid_json"),
    ],
)
async def test_it_refuses_bad_message_input_and_changes_nothing(
    api, upstream, settings, body, code
):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    created = await create(api)
    before = await counts()

    response = await api.request(
        "POST",
        f"/api/conversations/{created['id']}/messages/",
        body=body,
        headers={"Content-Type": "application/json"},
    )

    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == code
    assert error["message"]
    assert await counts() == before
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"model": "gpt-unknown"}, "unknown_model"),
        ({"title": 7}, "invalid_field"),
        ({"title": "x" * 201}, "too_long"),
        ({"system_prompt": {"a": 1}}, "invalid_field"),
    ],
)
async def test_it_refuses_bad_conversation_input(api, upstream, fields, code):
    response = await api.post("/api/conversations/", fields)

    assert response.status == 400
    assert (await response.json())["error"]["code"] == code
    assert await Conversation.objects.acount() == 0


async def test_it_answers_405_with_a_json_error_for_a_wrong_method(api, upstream):
    response = await api.request("PUT", "/api/conversations/")

    assert response.status == 405
    assert response.headers["allow"] == "GET, POST"
    assert (await response.json())["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/conversations/"),
        ("POST", "/api/conversations/"),
        ("GET", "/api/conversations/00000000-0000-0000-0000-000000000000/"),
        ("POST", "/api/conversations/00000000-0000-0000-0000-000000000000/messages/"),
        ("GET", "/api/generations/00000000-0000-0000-0000-000000000000/stream"),
        ("POST", "/api/generations/00000000-0000-0000-0000-000000000000/cancel"),
    ],
)
async def test_the_api_answers_401_json_without_a_session(transactional_db, method, path):
    response = await AsgiClient().request(method, path, body=b"{}")

    assert response.status == 401
    assert (await response.json())["error"]["code"] == "not_authenticated"


async def test_another_users_conversation_is_indistinguishable_from_a_missing_one(
    api, bob_api, upstream
):
    created = await create(api)
    before = await counts()

    for method, path in [
        ("GET", f"/api/conversations/{created['id']}/"),
        ("DELETE", f"/api/conversations/{created['id']}/"),
        ("POST", f"/api/conversations/{created['id']}/messages/"),
        ("GET", "/api/conversations/00000000-0000-0000-0000-000000000000/"),
    ]:
        response = await bob_api.request(method, path, body=b'{"content": "hi"}')
        assert response.status == 404, (method, path)
        assert await response.json() == {
            "error": {"code": "not_found", "message": "No such conversation."}
        }
    assert await counts() == before


async def test_a_malformed_id_is_a_json_404(api, upstream):
    response = await api.get("/api/conversations/not-a-uuid/")

    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_an_unsafe_request_without_the_csrf_token_is_refused_as_json(api, upstream):
    response = await api.request(
        "POST", "/api/conversations/", body=b"{}", headers={"X-CSRFToken": "b" * 32}
    )

    assert response.status == 403
    assert (await response.json())["error"]["code"] == "csrf_failed"
    assert await Conversation.objects.acount() == 0


async def test_cancel_of_a_finished_generation_is_accepted_and_changes_nothing(api, upstream):
    created = await create(api)
    posted = await (
        await api.post(f"/api/conversations/{created['id']}/messages/", {"content": "Hi"})
    ).json()
    await read_events(await api.get(posted["generation"]["stream_url"]))

    response = await api.post(posted["generation"]["cancel_url"])

    assert response.status == 202
    assert (await response.json())["finished"] is True
    answer = await Message.objects.aget(role="assistant")
    assert answer.status == "complete"


async def test_every_response_carries_a_request_id(api, upstream):
    mine = await api.get("/api/conversations/", headers={"X-Request-ID": "trace-42"})
    fresh = await api.get("/api/conversations/", headers={"X-Request-ID": "bad id\nwith newline"})

    assert mine.headers["x-request-id"] == "trace-42"
    assert len(fresh.headers["x-request-id"]) == 32


async def holding_the_writer(seconds: float) -> asyncio.Task[None]:
    """A write of the process's that holds SQLite's one writer for `seconds`, once it does."""
    started = threading.Event()

    def slow_write() -> None:
        started.set()
        time.sleep(seconds)

    holding = asyncio.create_task(db.write(slow_write))
    await asyncio.to_thread(started.wait)
    return holding


async def test_only_a_views_own_writes_give_up_when_the_queue_is_long(settings):
    if connection.vendor != "sqlite":
        pytest.skip("one writer at a time is SQLite's; PostgreSQL writes in parallel")
    settings.CHAT_DB_WRITE_WAIT = 0.2
    holding = await holding_the_writer(0.6)
    with db.bounded_writes(), pytest.raises(db.WritesBusy):
        await db.write(lambda: None)
    # Past the view (a stream ending an answer, a task it started): it waits its turn.
    waited = time.monotonic()
    await db.write(lambda: None)

    assert time.monotonic() - waited > 0.2
    await holding


async def test_writes_queue_on_sqlite_and_a_request_past_the_bound_is_refused_as_busy(
    api, upstream, settings
):
    if connection.vendor != "sqlite":
        pytest.skip("one writer at a time is SQLite's; PostgreSQL writes in parallel")
    conversation = await create(api)
    settings.CHAT_DB_WRITE_WAIT = 0.2
    holding = await holding_the_writer(1)

    refused = await api.post(
        f"/api/conversations/{conversation['id']}/messages/", {"content": "Hi"}
    )
    await holding
    admitted = await api.post(
        f"/api/conversations/{conversation['id']}/messages/", {"content": "Hi again"}
    )

    assert (refused.status, refused.headers["retry-after"]) == (503, "2")
    assert (await refused.json())["error"]["code"] == "busy_server"
    assert admitted.status == 202
    contents = [m.content async for m in Message.objects.filter(role="user")]
    assert contents == ["Hi again"]  # the refused post changed nothing
