"""The stateless endpoints: /api/completions and /api/chat/completions."""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncRequestFactory

from chat import limits
from chat.models import Conversation, Message, Usage
from chat.views import completions as views
from tests.asgi_client import AsgiClient, parse_events, read_events, read_until
from tests.conftest import logged_in_as
from tests.fakeopenai import Reply
from tests.test_stream import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

COMPLETIONS = "/api/completions"
CHAT_COMPLETIONS = "/api/chat/completions"


@pytest.fixture
def event_log(settings) -> str:
    """Stateless answers never touch the event log: one backend is enough."""
    settings.CHAT_EVENT_LOG = "memory"
    return "memory"


HI = {"role": "user", "content": "Hi"}


def sent_messages(upstream) -> list[dict]:
    return [r["body"]["messages"] for r in upstream.requests if r["body"].get("stream")]


async def test_a_prompt_streams_numbered_deltas_then_done(api, upstream):
    upstream.reply_to("Hi", Reply(tokens=["Hel", "lo", " world"]))

    response = await api.post(COMPLETIONS, {"prompt": "Hi"})
    events = await read_events(response)

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache, no-transform"
    assert response.headers["x-accel-buffering"] == "no"
    assert [(e.id, e.event) for e in events] == [
        (1, "delta"),
        (2, "delta"),
        (3, "delta"),
        (4, "done"),
    ]
    assert text_of(events) == "Hello world"
    assert events[-1].data["finish_reason"] == "stop"
    assert events[-1].data["message"] is None
    assert events[-1].data["cached"] is False
    assert events[-1].data["usage"]["completion_tokens"] == 3
    assert sent_messages(upstream) == [[{"role": "user", "content": "Hi"}]]


async def test_nothing_is_stored_but_the_usage(api, upstream, alice):
    await read_events(await api.post(COMPLETIONS, {"prompt": "Hi"}))

    assert await Conversation.objects.acount() == 0
    assert await Message.objects.acount() == 0
    usage = await Usage.objects.aget()
    assert (usage.user_id, usage.model, usage.generation_id) == (alice.pk, "gpt-test", None)
    assert (usage.completion_tokens, usage.estimated, usage.cached) == (2, False, False)


async def test_a_chat_completion_sends_the_clients_messages(api, upstream):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again"},
    ]

    events = await read_events(
        await api.post(CHAT_COMPLETIONS, {"messages": messages, "temperature": 0})
    )

    assert events[-1].event == "done"
    assert text_of(events) == "Echo: Again"
    assert sent_messages(upstream) == [messages]
    assert upstream.requests[0]["body"]["temperature"] == 0


async def test_a_long_message_list_is_trimmed_to_the_context_budget(api, upstream, settings):
    settings.CHAT_CONTEXT_TOKENS = 60
    old = [{"role": "user", "content": "old " * 40}, {"role": "assistant", "content": "ok"}]
    messages = [{"role": "system", "content": "Be brief."}, *old, {"role": "user", "content": "Hi"}]

    await read_events(await api.post(CHAT_COMPLETIONS, {"messages": messages}))

    assert sent_messages(upstream) == [[messages[0], *messages[-2:]]]


async def test_a_second_identical_request_is_answered_from_the_cache(api, upstream, any_cache):
    upstream.reply_to("Hi", Reply(tokens=["Hel", "lo"], first_token_delay=0.5))

    started = time.monotonic()
    first = await read_events(await api.post(COMPLETIONS, {"prompt": "Hi"}))
    first_took = time.monotonic() - started
    started = time.monotonic()
    second = await read_events(await api.post(COMPLETIONS, {"prompt": "Hi"}))
    second_took = time.monotonic() - started

    assert len(upstream.requests) == 1  # the second asked no model
    assert [(e.id, e.event) for e in second] == [(e.id, e.event) for e in first]
    assert text_of(second) == text_of(first) == "Hello"
    assert (first[-1].data["cached"], second[-1].data["cached"]) == (False, True)
    assert second[-1].data["usage"] == first[-1].data["usage"]
    assert second_took < first_took / 2, (first_took, second_took)
    assert [u.cached async for u in Usage.objects.order_by("created_at")] == [False, True]


async def test_a_conversation_and_a_chat_completion_share_the_cache(api, upstream):
    await read_events(await api.post(COMPLETIONS, {"prompt": "Hi"}))

    events = await read_events(
        await api.post(CHAT_COMPLETIONS, {"messages": [{"role": "user", "content": "Hi"}]})
    )

    assert events[-1].data["cached"] is True
    assert len(upstream.requests) == 1


async def test_cache_false_asks_the_model_again(api, upstream):
    await read_events(await api.post(COMPLETIONS, {"prompt": "Hi"}))

    events = await read_events(await api.post(COMPLETIONS, {"prompt": "Hi", "cache": False}))

    assert events[-1].data["cached"] is False
    assert len(upstream.requests) == 2


async def test_different_parameters_are_not_the_same_request(api, upstream):
    await read_events(await api.post(COMPLETIONS, {"prompt": "Hi", "temperature": 0}))

    events = await read_events(await api.post(COMPLETIONS, {"prompt": "Hi", "temperature": 1}))

    assert events[-1].data["cached"] is False
    assert len(upstream.requests) == 2


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(tokens=["a ", "b "], drop_after=1), "upstream_unreachable"),
        (Reply(tokens=[], status=500), "upstream_unavailable"),
        (Reply(tokens=["a "], malformed=True), "upstream_malformed"),
    ],
)
async def test_a_failed_answer_ends_with_an_error_and_is_not_cached(api, upstream, reply, code):
    upstream.reply_to("Hi", reply)

    first = await read_events(await api.post(COMPLETIONS, {"prompt": "Hi"}))
    await read_events(await api.post(COMPLETIONS, {"prompt": "Hi"}))

    assert (first[-1].event, first[-1].data["code"]) == ("error", code)
    assert first[-1].id == len(first)
    assert len(upstream.requests) == 2


async def test_a_client_leaving_stops_the_upstream_and_frees_its_slot(api, upstream, settings):
    settings.CHAT_MAX_CONCURRENT = 1
    upstream.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(200)], token_delay=0.02))

    reader = await api.post(COMPLETIONS, {"prompt": "Hi"})
    await read_until(reader, 2)
    await reader.disconnect()

    await asyncio.to_thread(upstream.wait_until, lambda: upstream.aborted == 1)
    usage = await Usage.objects.aget()
    assert usage.estimated and 0 < usage.completion_tokens < 200
    again = await api.post(COMPLETIONS, {"prompt": "Again"})
    assert again.status == 200
    assert (await read_events(again))[-1].event == "done"


async def test_a_client_leaving_before_the_stream_begins_frees_its_slot(upstream, alice, settings):
    settings.CHAT_MAX_CONCURRENT = 1
    request = AsyncRequestFactory().post(
        COMPLETIONS, {"prompt": "Hi"}, content_type="application/json"
    )
    await logged_in_as(request, alice)

    response = await views.completion(request)
    # Django closes a response whose client left before its first byte was sent: the
    # stream's own code never ran.
    await sync_to_async(response.close)()

    await sync_to_async(limits.admit)(alice)  # the one slot is free again
    assert upstream.requests == []


async def test_an_answer_past_the_time_limit_ends_with_timeout(api, upstream, settings):
    settings.CHAT_GENERATION_TIMEOUT = 0.5
    upstream.reply_to("Hi", Reply(tokens=["a "], hang=True))

    events = await read_events(await api.post(COMPLETIONS, {"prompt": "Hi"}))

    assert text_of(events) == "a "
    assert (events[-1].event, events[-1].data["code"]) == ("error", "timeout")
    await asyncio.to_thread(upstream.wait_until, lambda: upstream.aborted == 1)


async def test_a_quiet_upstream_gets_heartbeats(api, upstream, settings):
    settings.CHAT_SSE_HEARTBEAT = 0.1
    upstream.reply_to("Hi", Reply(tokens=["late"], first_token_delay=0.5))

    raw = await (await api.post(COMPLETIONS, {"prompt": "Hi"})).body()

    events, comments = parse_events(raw)
    assert comments.count("ping") >= 2
    assert text_of(events) == "late"


async def test_characters_split_across_network_writes_arrive_whole(api, upstream):
    tokens = ["Grüße ", "👋🏽 ", "日本語"]
    upstream.reply_to("Hi", Reply(tokens=tokens, split_writes=True))

    events = await read_events(await api.post(COMPLETIONS, {"prompt": "Hi"}))

    assert text_of(events) == "".join(tokens)


async def test_the_rate_limit_answers_429_with_retry_after(api, upstream, settings, any_cache):
    settings.CHAT_RATE_LIMITS = {"hour": 2}

    for prompt in ("one", "two"):
        await read_events(await api.post(COMPLETIONS, {"prompt": prompt}))
    refused = await api.post(CHAT_COMPLETIONS, {"messages": [{"role": "user", "content": "3"}]})

    assert refused.status == 429
    assert int(refused.headers["retry-after"]) > 0
    assert (await refused.json())["error"]["code"] == "rate_limited"
    assert len(upstream.requests) == 2


async def test_concurrent_streams_past_the_limit_get_429(api, upstream, settings):
    settings.CHAT_MAX_CONCURRENT = 1
    upstream.reply_to("Hi", Reply(tokens=["a "], hang=True))
    first = await api.post(COMPLETIONS, {"prompt": "Hi"})
    await read_until(first, 1)

    refused = await api.post(COMPLETIONS, {"prompt": "Other"})

    assert refused.status == 429
    assert (await refused.json())["error"]["code"] == "too_many_streams"
    await first.disconnect()


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        (COMPLETIONS, {}, "empty_field"),
        (COMPLETIONS, {"prompt": "   "}, "empty_field"),
        (COMPLETIONS, {"prompt": 5}, "invalid_field"),
        (COMPLETIONS, {"prompt": "x" * 20_001}, "too_long"),
        (COMPLETIONS, {"prompt": "\ud800"}, "invalid_text"),
        (COMPLETIONS, {"prompt": "Hi", "model": "gpt-9"}, "unknown_model"),
        (COMPLETIONS, {"prompt": "Hi", "temperature": 3}, "invalid_field"),
        (COMPLETIONS, {"prompt": "Hi", "temperature": "hot"}, "invalid_field"),
        (COMPLETIONS, {"prompt": "Hi", "max_tokens": 0}, "invalid_field"),
        (COMPLETIONS, {"prompt": "Hi", "max_tokens": 1.5}, "invalid_field"),
        (COMPLETIONS, {"prompt": "Hi", "cache": "no"}, "invalid_field"),
        (CHAT_COMPLETIONS, {}, "invalid_field"),
        (CHAT_COMPLETIONS, {"messages": []}, "invalid_field"),
        (CHAT_COMPLETIONS, {"messages": "Hi"}, "invalid_field"),
        (CHAT_COMPLETIONS, {"messages": [{"role": "user"}]}, "invalid_field"),
        (CHAT_COMPLETIONS, {"messages": [{"role": "tool", "content": "x"}]}, "invalid_field"),
        (CHAT_COMPLETIONS, {"messages": [{"role": "user", "content": ""}]}, "empty_field"),
        (CHAT_COMPLETIONS, {"messages": [{"role": "assistant", "content": "x"}]}, "invalid_field"),
        (CHAT_COMPLETIONS, {"messages": [["user", "Hi"]]}, "invalid_field"),
        (CHAT_COMPLETIONS, {"messages": [{"role": "user", "content": "x"}] * 1001}, "too_long"),
        (
            CHAT_COMPLETIONS,
            {"messages": [{"role": "assistant", "tool_calls": []}, HI]},
            "invalid_field",
        ),
        (
            CHAT_COMPLETIONS,
            {"messages": [{"role": "assistant", "tool_calls": [5]}, HI]},
            "invalid_field",
        ),
        (
            CHAT_COMPLETIONS,
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {}}]}, HI]},
            "invalid_field",
        ),
        (
            CHAT_COMPLETIONS,
            {"messages": [{"role": "tool", "tool_call_id": "a", "content": "1", "x": 1}, HI]},
            "invalid_field",
        ),
        (
            CHAT_COMPLETIONS,
            {"messages": [{"role": "tool", "tool_call_id": 5, "content": "1"}, HI]},
            "invalid_field",
        ),
    ],
)
async def test_bad_input_is_refused_and_asks_nothing(api, upstream, path, body, code):
    response = await api.post(path, body)

    assert response.status == 400
    assert (await response.json())["error"]["code"] == code
    assert upstream.requests == []
    assert await Usage.objects.acount() == 0


async def test_a_history_with_tool_calls_goes_upstream_in_openais_shape(api, upstream):
    history = [
        {"role": "user", "content": "6*7?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"value": 42}'},
        {"role": "assistant", "content": "42."},
        HI,
    ]

    events = await read_events(await api.post(CHAT_COMPLETIONS, {"messages": history}))

    assert events[-1].event == "done"
    assert sent_messages(upstream) == [history]


async def test_a_stateless_answer_runs_tools_as_the_user_and_streams_their_events(
    api, upstream, settings
):
    settings.CHAT_TOOLS = ["chat.tools.builtin.calculator"]
    function = {"name": "calculator", "arguments": '{"expression": "2+2"}'}
    call = {"tool_calls": [{"index": 0, "id": "c", "type": "function", "function": function}]}
    upstream.reply_to(
        "Add",
        Reply(
            tokens=[{"reasoning": "easy"}, call],
            finish_reason="tool_calls",
            after_tools=Reply(tokens=["4"]),
        ),
    )

    events = await read_events(await api.post(COMPLETIONS, {"prompt": "Add"}))

    assert [e.event for e in events] == ["reasoning", "tool_start", "tool_end", "delta", "done"]
    assert events[2].data["result"] == {"value": 4}
    usage = await Usage.objects.aget()
    assert usage.completion_tokens == 2 + 1  # both rounds


async def test_a_stuck_sync_tool_ends_the_stateless_answer_and_gives_its_slot_back(
    api, upstream, settings
):
    settings.CHAT_MAX_CONCURRENT = 1
    settings.CHAT_TOOLS = ["tests.tools_for_tests.blocks"]
    function = {"name": "blocks", "arguments": "{}"}
    call = {"tool_calls": [{"index": 0, "id": "b", "type": "function", "function": function}]}
    upstream.reply_to(
        "Block", Reply(tokens=[call], finish_reason="tool_calls", after_tools=Reply(["ok"]))
    )

    events = await read_events(await api.post(COMPLETIONS, {"prompt": "Block"}))

    assert [e.data["error"]["code"] for e in events if e.event == "tool_end"] == ["tool_timeout"]
    assert events[-1].event == "done"
    again = await api.post(COMPLETIONS, {"prompt": "Again"})  # the one slot is free
    assert (await read_events(again))[-1].event == "done"


async def test_a_body_that_is_not_json_is_refused(api, upstream):
    response = await api.request("POST", COMPLETIONS, body=b"{prompt")

    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("path", [COMPLETIONS, CHAT_COMPLETIONS])
async def test_the_endpoints_need_a_session_and_a_post(api, upstream, path):
    anonymous = await AsgiClient().post(path, {"prompt": "Hi"})
    got = await api.get(path)

    assert anonymous.status == 401
    assert (got.status, got.headers["allow"]) == (405, "POST")
    assert upstream.requests == []
