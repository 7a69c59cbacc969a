"""The POST-then-GET flow and the SSE stream, through the real ASGI application."""

import asyncio
import copy
import gzip

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session
from django.db.backends.signals import connection_created
from django.db.backends.utils import CursorWrapper
from django.test import AsyncRequestFactory

from chat import generation
from chat.models import Conversation, Generation, Message
from chat.replay import events_after
from chat.views.stream import generation_stream
from tests.asgi_client import AsgiClient, parse_events, read_events, read_until, with_query
from tests.conftest import finished_exchange, held_by_requests, logged_in_as, unstarted_answer
from tests.fakeopenai import Reply
from tests.servers import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

SLOW = 0.05  # seconds between tokens where a test must act mid-answer


async def ask(api: AsgiClient, prompt: str) -> dict:
    """Start a conversation, post a prompt, and return the 202 answer's JSON."""
    conversation = await (await api.post("/api/conversations/", {})).json()
    response = await api.post(
        f"/api/conversations/{conversation['id']}/messages/", {"content": prompt}
    )
    assert response.status == 202, await response.body()
    return await response.json()


async def stream(api: AsgiClient, posted: dict, **headers: str):
    return await api.get(posted["generation"]["stream_url"], headers=headers)


async def stored_answer(posted: dict) -> Message:
    found = await Generation.objects.select_related("message").aget(pk=posted["generation"]["id"])
    return found.message


def text_of(events) -> str:
    return "".join(e.data["content"] for e in events if e.event == "delta")


async def test_it_streams_numbered_deltas_then_done(api, upstream):
    # Paced: tokens read together would be one delta (docs/api.md).
    upstream.reply_to("Hi", Reply(tokens=["Hel", "lo", " world"], token_delay=0.02))
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert [(e.id, e.event) for e in events] == [
        (1, "delta"),
        (2, "delta"),
        (3, "delta"),
        (4, "done"),
    ]
    assert text_of(events) == "Hello world"
    message = await stored_answer(posted)
    assert events[-1].data == {
        "finish_reason": "stop",
        "message": str(message.pk),
        "usage": {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": 3,
            "total_tokens": message.prompt_tokens + 3,
        },
        "cached": False,
    }
    assert (message.content, message.status) == ("Hello world", "complete")


async def test_it_sends_the_conversation_and_model_upstream(api, upstream):
    conversation = await (
        await api.post("/api/conversations/", {"model": "gpt-other", "system_prompt": "Be brief."})
    ).json()
    response = await api.post(
        f"/api/conversations/{conversation['id']}/messages/", {"content": "Hi"}
    )
    await read_events(await stream(api, await response.json()))

    sent = upstream.requests[0]
    assert sent["headers"]["authorization"] == "Bearer sk-test-key"
    assert sent["body"]["model"] == "gpt-other"
    assert sent["body"]["stream"] is True
    assert sent["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


async def test_it_sends_sse_headers_and_opens_before_the_first_token(api, upstream):
    upstream.reply_to("Hi", Reply(tokens=["late"], first_token_delay=0.3))
    posted = await ask(api, "Hi")

    response = await stream(api, posted)
    first = await anext(response.chunks())

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache, no-transform"
    assert response.headers["x-accel-buffering"] == "no"
    assert "connection" not in response.headers
    assert first == b"retry: 1000\n: open\n\n"
    assert upstream.completed == 0  # the model had not answered yet
    await response.body()


async def test_it_sends_heartbeats_while_the_model_is_silent(api, upstream, settings):
    settings.CHAT_SSE_HEARTBEAT = 0.02
    upstream.reply_to("Hi", Reply(tokens=["late"], first_token_delay=0.3))
    posted = await ask(api, "Hi")

    raw = await (await stream(api, posted)).body()

    assert raw.index(b": ping\n\n") < raw.index(b"event: delta")


async def test_it_never_gzips_the_event_stream(api, upstream):
    posted = await ask(api, "Hi")

    response = await stream(api, posted, **{"Accept-Encoding": "gzip"})
    raw = await response.body()

    assert "content-encoding" not in response.headers
    assert b"event: done" in raw
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(raw)


async def test_the_stream_view_returns_an_async_iterator(api, upstream, alice):
    posted = await ask(api, "Hi")
    request = await logged_in_as(
        AsyncRequestFactory().get(posted["generation"]["stream_url"]), alice
    )
    response = await generation_stream(request, pk=posted["generation"]["id"])

    # A sync iterator would be buffered whole under ASGI.
    assert response.is_async
    assert b"event: done" in b"".join([chunk async for chunk in response])


async def test_it_replays_after_last_event_id_then_continues_live(api, upstream):
    tokens = [f"t{i} " for i in range(12)]
    upstream.reply_to("Hi", Reply(tokens=tokens, token_delay=SLOW))
    posted = await ask(api, "Hi")

    first = await stream(api, posted)
    seen, _ = await read_until(first, 3)
    await first.disconnect()
    rest = await read_events(await stream(api, posted, **{"Last-Event-ID": str(seen[-1].id)}))

    ids = [e.id for e in seen + rest]
    assert ids == list(range(1, len(tokens) + 2))
    assert text_of(seen + rest) == "".join(tokens) == (await stored_answer(posted)).content


async def test_it_accepts_the_last_event_id_as_a_query_parameter(api, upstream):
    posted = await ask(api, "one two three")
    await read_events(await stream(api, posted))
    url = with_query(posted["generation"]["stream_url"], last_event_id=2)

    events = await read_events(await api.get(url))

    assert events[0].id == 3


@pytest.mark.parametrize("cut", [0, 1, 4, 7])
async def test_a_reconnect_at_any_point_loses_and_repeats_nothing(api, upstream, cut):
    tokens = ["α", "β ", "γγ", " δ", "😀", "e", "f "]
    upstream.reply_to("Hi", Reply(tokens=tokens, token_delay=0.01))
    posted = await ask(api, "Hi")

    seen = []
    if cut:
        first = await stream(api, posted)
        seen, _ = await read_until(first, cut)
        seen = seen[:cut]
        await first.disconnect()
    last = str(seen[-1].id) if seen else "0"
    rest = await read_events(await stream(api, posted, **{"Last-Event-ID": last}))

    assert [e.id for e in seen + rest] == list(range(1, len(tokens) + 2))
    assert text_of(seen + rest) == (await stored_answer(posted)).content == "".join(tokens)


async def test_a_finished_generation_replays_exactly_as_it_streamed(api, upstream):
    upstream.reply_to("Hi", Reply(tokens=["a", "bb", "", "ccc", "\n\nd"]))
    posted = await ask(api, "Hi")
    live = await read_events(await stream(api, posted))

    replayed = await read_events(await stream(api, posted))
    tail = await read_events(await stream(api, posted, **{"Last-Event-ID": "2"}))

    assert replayed == live
    assert tail == live[2:]


async def test_it_answers_204_once_the_terminal_event_was_seen(api, upstream):
    posted = await ask(api, "one two")
    events = await read_events(await stream(api, posted))

    for seen in (events[-1].id, events[-1].id + 100):
        response = await stream(api, posted, **{"Last-Event-ID": str(seen)})
        assert response.status == 204
        assert await response.body() == b""


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "9" * 40, "１"])
async def test_it_refuses_a_garbage_last_event_id(api, upstream, value):
    posted = await ask(api, "Hi")

    response = await stream(api, posted, **{"Last-Event-ID": value})

    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_last_event_id"


async def test_it_refuses_a_last_event_id_past_the_end_of_a_running_stream(api, upstream):
    upstream.reply_to("Hi", Reply(tokens=["a", "b"], first_token_delay=0.3))
    posted = await ask(api, "Hi")

    response = await stream(api, posted, **{"Last-Event-ID": "50"})

    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_last_event_id"


async def test_cancel_stops_the_answer_and_closes_the_upstream_request(api, upstream):
    upstream.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(200)], token_delay=SLOW))
    posted = await ask(api, "Hi")
    reader = await stream(api, posted)
    _, raw = await read_until(reader, 2)

    response = await api.post(posted["generation"]["cancel_url"])
    assert response.status == 202
    async for chunk in reader.chunks():
        raw += chunk
    events, _ = parse_events(raw)

    assert events[-1].event == "done"
    assert events[-1].data["finish_reason"] == "cancelled"
    await asyncio.to_thread(upstream.wait_until, lambda: upstream.aborted == 1)
    message = await stored_answer(posted)
    assert message.status == "cancelled"
    assert message.content == text_of(events)
    assert len(events) < 100


async def test_a_cancel_while_a_part_is_being_appended_keeps_stream_and_store_equal(api, upstream):
    # A model at full speed: its producer spends most of its time appending to the log,
    # so each cancel lands while an append is on its way. The part it appends must be
    # counted in the stored answer, or the terminal event's id repeats that part's.
    upstream.reply_to("Fast", Reply(tokens=[f"w{i} " for i in range(5000)]))
    for _ in range(5):
        posted = await ask(api, "Fast")
        reader = await stream(api, posted)
        _, raw = await read_until(reader, 5)
        await api.post(posted["generation"]["cancel_url"])
        async for chunk in reader.chunks():
            raw += chunk
        events, _ = parse_events(raw)

        generation = await Generation.objects.select_related("message").aget(
            pk=posted["generation"]["id"]
        )
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert (events[-1].event, events[-1].id) == ("done", generation.last_event_id)
        assert generation.message.content == text_of(events)


async def test_a_reader_leaving_does_not_stop_the_answer(api, upstream):
    tokens = [f"w{i} " for i in range(20)]
    upstream.reply_to("Hi", Reply(tokens=tokens, token_delay=0.01))
    posted = await ask(api, "Hi")
    reader = await stream(api, posted)
    await read_until(reader, 1)

    # disconnect() returns only once the application has stopped: the stream's
    # generator saw the cancellation and let it propagate.
    await reader.disconnect()
    await generation.wait_all()

    message = await stored_answer(posted)
    assert (message.status, message.content) == ("complete", "".join(tokens))
    assert upstream.aborted == 0


async def test_the_stream_holds_no_database_connection(api, upstream):
    upstream.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(20)], token_delay=SLOW))
    opened = []

    def track(sender, connection, **kwargs):
        opened.append(connection)

    connection_created.connect(track)
    try:
        posted = await ask(api, "Hi")
        reader = await stream(api, posted)
        await read_until(reader, 3)
        held = held_by_requests(opened)
        await reader.body()
    finally:
        connection_created.disconnect(track)

    assert opened, "the request opened no connection: the test proves nothing"
    assert held == []


async def test_the_stream_of_an_answer_this_process_runs_opens_without_a_query(
    api, upstream, monkeypatch
):
    # Paced, so that the first event is "a" alone and the answer runs on past it.
    upstream.reply_to("Hi", Reply(tokens=["a", "b"], first_token_delay=0.3, token_delay=0.5))
    posted = await ask(api, "Hi")
    statements = []
    execute = CursorWrapper.execute

    def recorded(cursor, sql, params=None):
        statements.append(sql)
        return execute(cursor, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", recorded)
    reader = await stream(api, posted)
    events, _ = await read_until(reader, 1)
    monkeypatch.undo()

    assert events[0].data["content"] == "a"
    assert statements == []
    await reader.body()


async def test_a_reader_that_saw_the_end_of_an_answer_ended_elsewhere_gets_nothing_again(
    alice, settings
):
    settings.CHAT_EVENT_LOG = "memory"
    _, _, finished = await sync_to_async(finished_exchange)(alice)
    # As a reader holds it who took it while it ran; its log is gone, its row has ended.
    seen_running = copy.copy(finished)
    seen_running.last_event_id = None

    batches = [batch async for batch in events_after(seen_running, 3, idle=1)]

    assert batches == []


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "upstream_auth"),
        (403, "upstream_auth"),
        (404, "upstream_not_found"),
        (429, "upstream_rate_limited"),
        (500, "upstream_unavailable"),
        (503, "upstream_unavailable"),
    ],
)
async def test_an_upstream_error_ends_the_stream_with_a_readable_error(api, upstream, status, code):
    upstream.reply_to("Hi", Reply(tokens=[], status=status))
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert [(e.id, e.event, e.data["code"]) for e in events] == [(1, "error", code)]
    assert events[0].data["message"]
    message = await stored_answer(posted)
    assert (message.status, message.error_code) == ("error", code)
    question = await Message.objects.aget(conversation=message.conversation_id, role="user")
    assert question.content == "Hi"


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(tokens=["a ", "b ", "c ", "d "], drop_after=2), "upstream_unreachable"),
        (
            Reply(tokens=["a ", "b ", "c ", "d "], drop_after=2, mid_frame=True),
            "upstream_unreachable",
        ),
        (Reply(tokens=["a ", "b "], in_band_error="overloaded"), "upstream_error"),
    ],
)
async def test_a_failure_mid_answer_keeps_the_partial_text(api, upstream, reply, code):
    upstream.reply_to("Hi", reply)
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert events[-1].event == "error"
    assert events[-1].data["code"] == code
    assert text_of(events) == "a b "
    message = await stored_answer(posted)
    assert (message.status, message.content) == ("error", "a b ")


async def test_an_upstream_refusing_connections_is_a_clear_error_and_the_next_answer_works(
    api, upstream, settings
):
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert [(e.event, e.data["code"]) for e in events] == [("error", "upstream_unreachable")]
    assert (await stored_answer(posted)).status == "error"
    settings.OPENAI_BASE_URL = upstream.base_url
    again = await read_events(await stream(api, await ask(api, "Hi")))
    assert (again[-1].event, text_of(again)) == ("done", "Echo: Hi")


async def test_a_stalled_model_times_out_with_a_clear_error(api, upstream, settings):
    settings.CHAT_UPSTREAM_READ_TIMEOUT = 0.2
    upstream.reply_to("Hi", Reply(tokens=["a "], hang=True))
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert (events[-1].event, events[-1].data["code"]) == ("error", "upstream_timeout")
    assert (await stored_answer(posted)).content == "a "


async def test_an_answer_past_its_deadline_is_stopped_upstream(api, upstream, settings):
    settings.CHAT_GENERATION_TIMEOUT = 0.3
    upstream.reply_to("Hi", Reply(tokens=["a "] * 100, token_delay=SLOW))
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert (events[-1].event, events[-1].data["code"]) == ("error", "timeout")
    await asyncio.to_thread(upstream.wait_until, lambda: upstream.aborted == 1)
    assert (await stored_answer(posted)).content == text_of(events)


async def test_utf8_split_across_upstream_chunks_arrives_whole(api, upstream):
    tokens = ["héllo ", "wörld ", "日本語", "🎉🚀", " Ünïcödé", "👩‍👩‍👧"]
    upstream.reply_to("Hi", Reply(tokens=tokens, split_writes=True))
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert text_of(events) == "".join(tokens) == (await stored_answer(posted)).content


async def test_a_long_answer_is_stored_byte_for_byte(api, upstream):
    tokens = [f"token{i}{'é' if i % 7 else '\n'} " for i in range(3000)]
    upstream.reply_to("Hi", Reply(tokens=tokens))
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert len(events) == 3001
    assert text_of(events).encode() == (await stored_answer(posted)).content.encode()


async def test_a_post_asking_for_event_stream_gets_the_stream_itself(api, upstream):
    conversation = await (await api.post("/api/conversations/", {})).json()

    response = await api.post(
        f"/api/conversations/{conversation['id']}/messages/",
        {"content": "one two"},
        headers={"Accept": "text/event-stream"},
    )
    events = await read_events(response)

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert text_of(events) == "Echo: one two"
    assert events[-1].event == "done"
    replayed = await read_events(await api.get(response.headers["location"]))
    assert replayed == events
    cancelled = await api.post(response.headers["x-cancel-url"])
    assert (await cancelled.json())["finished"] is True


async def test_the_demo_model_answers_through_the_sdk(api, settings):
    settings.CHAT_DEMO = True
    settings.CHAT_MODEL = "demo"
    settings.CHAT_MODELS = ["demo"]
    settings.CHAT_DEMO_TOKEN_DELAY = 0
    posted = await ask(api, "What is SSE?")

    events = await read_events(await stream(api, posted))

    assert "offline demo model" in text_of(events)
    assert "> What is SSE?" in text_of(events)
    assert events[-1].data["usage"]["completion_tokens"] == len(events) - 1
    assert (await stored_answer(posted)).content == text_of(events)


async def test_a_stream_needs_a_session(api, upstream):
    posted = await ask(api, "Hi")

    response = await AsgiClient().get(posted["generation"]["stream_url"])

    assert response.status == 401
    assert (await response.json())["error"]["code"] == "not_authenticated"


async def test_a_stream_token_admits_only_its_session_and_only_to_its_generation(
    api, upstream, settings
):
    first, second = await ask(api, "Hi"), await ask(api, "Hello")
    for posted in (first, second):
        await read_events(await stream(api, posted))
    # The session is gone from the store: what still admits the client is a token alone.
    await Session.objects.all().adelete()
    first_path = f"/api/generations/{first['generation']['id']}/"
    second_path = f"/api/generations/{second['generation']['id']}/"

    own = await api.get(first["generation"]["stream_url"])
    swapped = await api.get(second["generation"]["stream_url"].replace(second_path, first_path))
    settings.CHAT_STREAM_TOKEN_MAX_AGE = 0
    stale = await api.get(first["generation"]["stream_url"])

    assert (own.status, swapped.status, stale.status) == (200, 401, 401)
    assert text_of(await read_events(own)) == (await stored_answer(first)).content


async def test_another_users_stream_and_cancel_are_not_found(api, bob_api, upstream):
    posted = await ask(api, "Hi")

    streamed = await bob_api.get(posted["generation"]["stream_url"])
    cancelled = await bob_api.post(posted["generation"]["cancel_url"])

    assert (streamed.status, cancelled.status) == (404, 404)
    assert (await cancelled.json())["error"]["code"] == "not_found"
    await read_events(await stream(api, posted))
    assert (await stored_answer(posted)).status == "complete"


async def test_a_generation_whose_producer_is_gone_is_reported_not_left_hanging(
    api, upstream, alice
):
    conversation = await Conversation.objects.acreate(owner=alice, model="gpt-test")
    # Saved but never started: as if the process running it had died.
    lost = await unstarted_answer(conversation)

    events = await read_events(await api.get(lost.get_stream_url()))

    assert [(e.id, e.event, e.data["code"]) for e in events] == [(1, "error", "interrupted")]
    message = await Message.objects.aget(pk=lost.message.pk)
    assert message.status == "error"
