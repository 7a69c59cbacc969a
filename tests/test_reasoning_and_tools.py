"""Reasoning and tool calls on the stream, through the real ASGI application, on each event log."""

import json

import pytest

from chat import ending
from chat.deltas import MAX_CALLS
from chat.eventlog import get_event_log
from chat.events import Part
from chat.models import Conversation, Generation, Message, Usage
from tests.asgi_client import read_events, read_until
from tests.conftest import unstarted_answer
from tests.fakeopenai import Reply
from tests.test_stream import ask, stored_answer, stream, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

TEST_TOOLS = [
    "chat.tools.builtin.calculator",
    "chat.tools.builtin.current_time",
    "tests.tools_for_tests.slow_steps",
    "tests.tools_for_tests.waits",
    "tests.tools_for_tests.explodes",
]


@pytest.fixture
def tools(settings):
    settings.CHAT_TOOLS = TEST_TOOLS


def call(call_id: str, name: str, arguments: str, index: int = 0) -> dict:
    return {
        "tool_calls": [
            {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        ]
    }


def calls_tool(*calls: dict, then: Reply | None = None) -> Reply:
    """A reply that asks for tools, then (with their results) answers `then`."""
    answer = then or Reply(tokens=["It is ", "42."])
    return Reply(tokens=list(calls), finish_reason="tool_calls", after_tools=answer)


def answering_requests(upstream) -> list[dict]:
    """The bodies of the streamed requests upstream: the rounds of answers, not titles."""
    return [r["body"] for r in upstream.requests if r["body"].get("stream")]


def reasoning_of(events) -> str:
    return "".join(e.data["content"] for e in events if e.event == "reasoning")


def tool_calls_of(events) -> list[dict]:
    """The tool calls the events tell of, in the stored message's shape."""
    calls: list[dict] = []
    for event in events:
        if event.event == "tool_start":
            calls.append(dict(event.data))
        elif event.event == "tool_end":
            started = next(c for c in reversed(calls) if c["id"] == event.data["id"])
            started.update({k: v for k, v in event.data.items() if k in ("result", "error")})
    return calls


async def assert_stored_equals_streamed(api, posted: dict, events) -> Message:
    """The invariant: after done, the store holds exactly what the stream carried."""
    message = await stored_answer(posted)
    assert message.content == text_of(events)
    assert message.reasoning == reasoning_of(events)
    assert message.tool_calls == tool_calls_of(events)
    assert await read_events(await stream(api, posted)) == events  # replayed from the store
    conversation = await Conversation.objects.aget(messages=message)
    detail = await (await api.get(f"/api/conversations/{conversation.pk}/")).json()
    shown = next(m for m in detail["messages"] if m["id"] == str(message.pk))
    assert (shown["reasoning"], shown["tool_calls"]) == (message.reasoning, message.tool_calls)
    return message


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_reasoning_fields_stream_as_reasoning_and_are_stored_apart(api, upstream, field):
    upstream.reply_to(
        "Hi", Reply(tokens=[{field: "Let me "}, {field: "think."}, "Hello", " there"])
    )
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert reasoning_of(events) == "Let me think."
    assert text_of(events) == "Hello there"
    message = await assert_stored_equals_streamed(api, posted, events)
    assert "think" not in message.content


async def test_inline_think_tags_cut_inside_the_tag_are_reasoning(api, upstream):
    tokens = ["Sure. <th", "ink>weigh", "ing it</thi", "nk>Yes: ", "42"]
    upstream.reply_to("Hi", Reply(tokens=tokens, split_writes=True))
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert reasoning_of(events) == "weighing it"
    assert text_of(events) == "Sure. Yes: 42"
    await assert_stored_equals_streamed(api, posted, events)


async def test_a_tool_call_runs_and_the_model_answers_with_its_result(api, upstream, tools):
    arguments = json.dumps({"expression": "6*7"})
    fragments = [
        call("call_a", "calculator", ""),
        *({"tool_calls": [{"index": 0, "function": {"arguments": c}}]} for c in arguments),
    ]
    upstream.reply_to("Sum?", calls_tool(*fragments))
    posted = await ask(api, "Sum?")

    events = await read_events(await stream(api, posted))

    assert [e.event for e in events] == ["tool_start", "tool_end", "delta", "delta", "done"]
    assert events[0].data == {
        "id": "call_a",
        "name": "calculator",
        "arguments": {"expression": "6*7"},
    }
    assert events[1].data == {"id": "call_a", "name": "calculator", "result": {"value": 42}}
    message = await assert_stored_equals_streamed(api, posted, events)
    # The second request carries the call and its result, in OpenAI's shape.
    first, second = answering_requests(upstream)
    assert [t["function"]["name"] for t in first["tools"]] == [
        "calculator",
        "current_time",
        "slow_steps",
        "waits",
        "explodes",
    ]
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"value": 42}'},
    ]
    # Both rounds are counted (the fake counts a token per word, and per token it sent).
    usage = await Usage.objects.aget(generation=posted["generation"]["id"])
    assert (usage.prompt_tokens, usage.completion_tokens) == (1 + 3, len(fragments) + 2)
    assert events[-1].data["usage"]["total_tokens"] == 4 + len(fragments) + 2
    assert message.status == "complete"


async def test_parallel_calls_a_reused_index_and_a_whole_call_each_run(api, upstream, tools):
    upstream.reply_to(
        "Many",
        calls_tool(
            call("a", "calculator", '{"expression": "1+1"}', index=0),
            call("b", "current_time", "{}", index=1),
            call("c", "calculator", '{"expression": "2+2"}', index=0),  # a reused index
        ),
    )
    posted = await ask(api, "Many")

    events = await read_events(await stream(api, posted))

    ends = [e.data for e in events if e.event == "tool_end"]
    assert [(end["id"], end["name"]) for end in ends] == [
        ("a", "calculator"),
        ("b", "current_time"),
        ("c", "calculator"),
    ]
    assert (ends[0]["result"], ends[2]["result"]) == ({"value": 2}, {"value": 4})
    await assert_stored_equals_streamed(api, posted, events)


async def test_a_failing_call_is_a_tool_error_the_model_reads(api, upstream, tools):
    upstream.reply_to(
        "Break",
        calls_tool(
            call("a", "no_such_tool", "{}", index=0),
            call("b", "calculator", "{not json", index=1),
            call("c", "explodes", "{}", index=2),
        ),
    )
    posted = await ask(api, "Break")

    events = await read_events(await stream(api, posted))

    ends = [e.data["error"]["code"] for e in events if e.event == "tool_end"]
    assert ends == ["unknown_tool", "invalid_arguments", "tool_failed"]
    assert events[-1].event == "done"
    results = [m for m in answering_requests(upstream)[-1]["messages"] if m["role"] == "tool"]
    assert [json.loads(m["content"])["error"] for m in results] == [
        "There is no tool 'no_such_tool'.",
        "The arguments are not valid JSON.",
        "The tool failed.",
    ]
    await assert_stored_equals_streamed(api, posted, events)


async def test_a_model_asking_for_tools_forever_is_stopped_with_a_clear_error(
    api, upstream, tools, settings
):
    settings.CHAT_MAX_TOOL_STEPS = 3
    forever = Reply(tokens=["Again. ", call("x", "calculator", '{"expression": "1"}')])
    forever.finish_reason = "tool_calls"
    forever.after_tools = forever
    upstream.reply_to("Loop", forever)
    posted = await ask(api, "Loop")

    events = await read_events(await stream(api, posted))

    assert events[-1].event == "error"
    assert events[-1].data["code"] == "too_many_tool_steps"
    assert len(answering_requests(upstream)) == 4
    message = await assert_stored_equals_streamed(api, posted, events)
    assert message.content == "Again. " * 4
    # The server goes on serving.
    upstream.reply_to("Then", Reply(tokens=["fine"]))
    assert text_of(await read_events(await stream(api, await ask(api, "Then")))) == "fine"


async def test_huge_hostile_arguments_end_as_a_tool_error(api, upstream, tools):
    megabyte = json.dumps({"expression": "1" * 1_000_000})
    pieces = [megabyte[i : i + 50_000] for i in range(0, len(megabyte), 50_000)]
    fragments = [call("a", "calculator", pieces[0])] + [
        {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in pieces[1:]
    ]
    upstream.reply_to("Huge", calls_tool(*fragments))
    posted = await ask(api, "Huge")

    events = await read_events(await stream(api, posted))

    ends = [e.data for e in events if e.event == "tool_end"]
    assert ends == [
        {
            "id": "a",
            "name": "calculator",
            "error": {"code": "invalid_arguments", "message": "The arguments are too long."},
        }
    ]
    await assert_stored_equals_streamed(api, posted, events)


async def test_progress_events_stream_and_replay_like_the_rest(api, upstream, tools):
    upstream.reply_to("Work", calls_tool(call("w", "slow_steps", '{"steps": 2}')))
    posted = await ask(api, "Work")

    events = await read_events(await stream(api, posted))

    assert [e.event for e in events][:4] == ["tool_start", "progress", "progress", "tool_end"]
    assert events[2].data == {"id": "w", "message": "step 2 of 2", "fraction": 1.0}
    await assert_stored_equals_streamed(api, posted, events)


async def test_a_reconnect_at_any_point_of_a_mixed_answer_loses_and_repeats_nothing(
    api, upstream, tools
):
    then = Reply(tokens=[{"reasoning": "so "}, "It ", "is ", "two."], token_delay=0.01)
    reply = calls_tool(call("a", "calculator", '{"expression": "1+1"}'), then=then)
    reply.tokens = [{"reasoning": "Add "}, {"reasoning": "them."}, "Let me see. ", *reply.tokens]
    reply.token_delay = 0.01
    upstream.reply_to("Mixed", reply)
    posted = await ask(api, "Mixed")
    everything = await read_events(await stream(api, posted))

    for cut in range(1, len(everything)):
        rest = await read_events(await stream(api, posted, **{"Last-Event-ID": str(cut)}))
        assert everything[:cut] + rest == everything

    kinds = {e.event for e in everything}
    assert {"reasoning", "tool_start", "tool_end", "delta", "done"} <= kinds
    assert [e.id for e in everything] == list(range(1, len(everything) + 1))
    await assert_stored_equals_streamed(api, posted, everything)


async def test_stop_during_a_tool_run_stops_it_and_keeps_what_came(api, upstream, tools):
    upstream.reply_to("Wait", calls_tool(call("w", "waits", "{}")))
    posted = await ask(api, "Wait")
    response = await stream(api, posted)
    seen, _ = await read_until(response, 1)
    assert seen[0].event == "tool_start"

    cancelled = await api.post(posted["generation"]["cancel_url"], {})
    assert cancelled.status in (200, 202, 204)
    events = seen + await read_events(response)

    assert [e.event for e in events] == ["tool_start", "done"]
    assert events[-1].data["finish_reason"] == "cancelled"
    message = await assert_stored_equals_streamed(api, posted, events)
    assert message.tool_calls == [{"id": "w", "name": "waits", "arguments": {}}]
    assert len(answering_requests(upstream)) == 1


async def test_an_upstream_that_refuses_tools_is_asked_again_without_them(
    api, upstream, tools, caplog
):
    upstream.reply_to("Hi", Reply(tokens=["Plain."], refuse_tools=True))
    posted = await ask(api, "Hi")

    events = await read_events(await stream(api, posted))

    assert text_of(events) == "Plain."
    assert ["tools" in body for body in answering_requests(upstream)] == [True, False]
    assert "refused tools" in caplog.text
    assert "gpt-test does not support tools" in caplog.text  # the upstream's own reason


async def test_a_model_configured_without_tools_is_offered_none(api, upstream, tools, settings):
    settings.CHAT_MODELS_WITHOUT_TOOLS = {"gpt-test"}
    await read_events(await stream(api, await ask(api, "Hi")))

    assert "tools" not in answering_requests(upstream)[0]


async def test_a_model_without_tools_gets_earlier_tool_rounds_as_text(
    api, upstream, tools, settings
):
    upstream.reply_to("First", calls_tool(call("a", "calculator", '{"expression": "6*7"}')))
    posted = await ask(api, "First")
    await read_events(await stream(api, posted))
    conversation = (await Generation.objects.aget(pk=posted["generation"]["id"])).conversation_id
    settings.CHAT_MODELS_WITHOUT_TOOLS = {"gpt-test"}

    again = await api.post(f"/api/conversations/{conversation}/messages/", {"content": "Next"})
    await read_events(await stream(api, await again.json()))

    history = answering_requests(upstream)[-1]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "assistant", "user"]
    assert "tool_calls" not in history[1]
    assert "calculator" in history[1]["content"] and "42" in history[1]["content"]


async def test_a_round_asking_for_more_calls_than_allowed_runs_the_first_ones(api, upstream, tools):
    many = [call(f"c{n}", "calculator", '{"expression": "1"}', index=n) for n in range(40)]
    upstream.reply_to("Many", calls_tool(*many))
    posted = await ask(api, "Many")

    events = await read_events(await stream(api, posted))

    assert len([e for e in events if e.event == "tool_end"]) == MAX_CALLS
    calls = [m for m in answering_requests(upstream)[-1]["messages"] if m["role"] == "tool"]
    assert len(calls) == MAX_CALLS
    await assert_stored_equals_streamed(api, posted, events)


async def test_later_turns_send_tool_calls_and_results_but_never_reasoning(api, upstream, tools):
    reply = calls_tool(call("a", "calculator", '{"expression": "6*7"}'))
    reply.tokens.insert(0, {"reasoning": "private thoughts"})
    upstream.reply_to("First", reply)
    posted = await ask(api, "First")
    await read_events(await stream(api, posted))
    conversation = (await Generation.objects.aget(pk=posted["generation"]["id"])).conversation_id

    again = await api.post(f"/api/conversations/{conversation}/messages/", {"content": "Next"})
    await read_events(await stream(api, await again.json()))

    history = answering_requests(upstream)[-1]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant", "user"]
    assert history[1]["tool_calls"][0]["function"]["name"] == "calculator"
    assert history[2]["content"] == '{"value": 42}'
    assert history[3]["content"] == "It is 42."
    assert "private thoughts" not in json.dumps(history)


async def test_a_dead_producers_reasoning_and_tool_events_are_kept_by_its_settler(
    api, upstream, alice
):
    conversation = await Conversation.objects.acreate(owner=alice, model="gpt-test")
    lost = await unstarted_answer(conversation)
    log = get_event_log()
    await log.open(str(lost.pk))
    start = {"id": "a", "name": "calculator", "arguments": {"expression": "1"}}
    await log.append(
        str(lost.pk),
        [
            Part.reasoning("hmm"),
            Part("tool_start", start),
            Part("tool_end", {"id": "a", "name": "calculator", "result": {"value": 1}}),
            Part.text("One."),
        ],
    )

    settled = await ending.settle(lost.pk)

    assert settled is not None
    message = settled.message
    assert (message.reasoning, message.content) == ("hmm", "One.")
    assert message.tool_calls == [{**start, "result": {"value": 1}}]
    posted = {"generation": {"stream_url": lost.get_stream_url()}}
    replayed = await read_events(await stream(api, posted))
    assert [e.event for e in replayed] == ["reasoning", "tool_start", "tool_end", "delta", "error"]


async def test_the_demo_model_thinks_and_calls_tools_without_a_key(api, settings, event_log):
    settings.CHAT_DEMO = True
    settings.CHAT_MODEL = "demo"
    settings.CHAT_MODELS = ["demo"]
    settings.CHAT_DEMO_TOKEN_DELAY = 0
    think = await read_events(await stream(api, await ask(api, "Please think about it")))
    compute = await read_events(await stream(api, await ask(api, "What is 6*7?")))

    assert reasoning_of(think) and text_of(think)
    assert [e.data["result"] for e in compute if e.event == "tool_end"] == [{"value": 42}]
    assert "42" in text_of(compute)
