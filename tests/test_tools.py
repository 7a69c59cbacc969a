"""The tools: the registry, the built-in ones, and running a call the model asked for."""

import asyncio
import datetime
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from chat.deltas import ToolCall
from chat.events import PROGRESS, TOOL_END, TOOL_START
from chat.models import Conversation, Message
from chat.tools import ToolContext, ToolError, offered_to, runner, tool
from chat.tools.builtin import calculator, current_time, search_conversations
from tests import tools_for_tests

pytestmark = pytest.mark.anyio

CONTEXT = ToolContext(user=None, progress=lambda message, fraction=None: None)


def calculate(expression: str):
    return calculator.function(CONTEXT, expression)["value"]


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("6*7", 42),
        ("2^10", 1024),
        ("(2 + 3) \u00d7 4", 20),
        ("7 \u00f7 2", 3.5),
        ("-3 \u2212 4", -7),
        ("2 ** -1", 0.5),
        ("17 // 5 + 17 % 5", 5),
        ("1.5e3 / 3", 500.0),
    ],
)
def test_the_calculator_computes_arithmetic(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "9**9**9**9",
        "10**1001",
        "(10**500) * (10**600)",
        "1e308 * 10",
        "2 ** 99999999999",
    ],
)
def test_the_calculator_refuses_huge_results_at_once(expression):
    started = time.monotonic()
    with pytest.raises(ToolError, match="too large"):
        calculate(expression)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('id')",
        "open('/etc/passwd')",
        "x + 1",
        "[1, 2]",
        "True + 1",
        "(1).__class__",
        "lambda: 1",
        "1 if 2 else 3",
        "(" * 300 + "1" + ")" * 300,
        "1 +",
        "1" * 501,
        "(-1) ** 0.5",
    ],
)
def test_the_calculator_refuses_anything_but_arithmetic(expression):
    with pytest.raises(ToolError):
        calculate(expression)


def test_the_calculator_refuses_division_by_zero():
    with pytest.raises(ToolError, match="Division by zero"):
        calculate("1 / (2 - 2)")


def test_current_time_reads_an_iana_zone():
    paris = current_time.function(CONTEXT, "Europe/Paris")
    now = datetime.datetime.fromisoformat(paris["iso"])
    assert now.utcoffset() in (datetime.timedelta(hours=1), datetime.timedelta(hours=2))
    utc = current_time.function(CONTEXT)
    assert datetime.datetime.fromisoformat(utc["iso"]).utcoffset() == datetime.timedelta(0)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "", "UTC\x00"])
def test_current_time_refuses_what_is_not_a_zone(zone):
    with pytest.raises(ToolError, match="not an IANA time zone"):
        current_time.function(CONTEXT, zone)


@pytest.mark.django_db
def test_search_conversations_finds_only_the_users_own_messages(alice, bob):
    mine = Conversation.objects.create(owner=alice, title="Trip", model="gpt-test")
    theirs = Conversation.objects.create(owner=bob, title="Secret", model="gpt-test")
    Message.objects.create(conversation=mine, role="user", content="The fjords of Norway")
    Message.objects.create(conversation=theirs, role="user", content="Norway bank password")

    found = search_conversations.function(ToolContext(alice, CONTEXT.progress), "norway")

    assert [(m["conversation"], m["excerpt"]) for m in found["matches"]] == [
        ("Trip", "The fjords of Norway")
    ]


def test_a_tools_schema_comes_from_its_type_hints():
    assert calculator.spec == {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": calculator.description,
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
                "additionalProperties": False,
            },
        },
    }
    assert search_conversations.parameters["properties"]["limit"] == {"type": "integer"}
    assert search_conversations.parameters["required"] == ["query"]


def test_a_tool_without_a_schema_for_its_hints_is_refused_at_import():
    with pytest.raises(ImproperlyConfigured, match="no JSON schema"):

        @tool
        def strange(context: ToolContext, when: datetime.date) -> None:
            """Takes a date."""


def test_chat_tools_names_the_tools_and_a_model_may_have_none(settings):
    settings.CHAT_TOOLS = ["chat.tools.builtin.calculator"]
    settings.CHAT_MODELS_WITHOUT_TOOLS = {"small"}
    assert offered_to("gpt-test") == (calculator,)
    assert offered_to("small") == ()
    settings.CHAT_TOOLS = []
    assert offered_to("gpt-test") == ()


@pytest.mark.parametrize(
    ("paths", "problem"),
    [
        (["chat.tools.builtin.nothing"], "cannot import"),
        (["chat.tools.builtin.MAX_DIGITS"], "not decorated"),
        (["chat.tools.builtin.calculator", "chat.tools.builtin.calculator"], "share a name"),
    ],
)
def test_a_wrong_chat_tools_entry_is_a_clear_configuration_error(settings, paths, problem):
    settings.CHAT_TOOLS = paths
    with pytest.raises(ImproperlyConfigured, match=problem):
        offered_to("gpt-test")


TEST_TOOLS = (
    calculator,
    tools_for_tests.blocks,
    tools_for_tests.slow_steps,
    tools_for_tests.hangs,
    tools_for_tests.explodes,
    tools_for_tests.refuses,
    tools_for_tests.threaded_progress,
    tools_for_tests.not_json,
)


async def run(name: str, arguments: str = "{}", **call: object) -> list[tuple[str, dict]]:
    tool_call = ToolCall(id="call_1", name=name, arguments=arguments, **call)
    return [(part.kind, part.data) async for part in runner.run(tool_call, TEST_TOOLS, None)]


async def test_a_call_starts_then_ends_with_its_result():
    assert await run("calculator", '{"expression": "6*7"}') == [
        (TOOL_START, {"id": "call_1", "name": "calculator", "arguments": {"expression": "6*7"}}),
        (TOOL_END, {"id": "call_1", "name": "calculator", "result": {"value": 42}}),
    ]


async def error_of(name: str, arguments: str = "{}", **call: object) -> dict:
    *_, (kind, end) = await run(name, arguments, **call)
    assert kind == TOOL_END and "result" not in end
    return end["error"]


@pytest.mark.parametrize(
    ("name", "arguments", "code"),
    [
        ("nothing", "{}", "unknown_tool"),
        ("calculator", '{"expression": ', "invalid_arguments"),
        ("calculator", "[1]", "invalid_arguments"),
        ("calculator", "{}", "invalid_arguments"),
        ("calculator", '{"expression": 5}', "invalid_arguments"),
        ("calculator", '{"expression": "1", "extra": 1}', "invalid_arguments"),
        ("calculator", '{"expression": "' + "1+" * 400 + '1"}', "tool_error"),
        ("calculator", '{"expression": "9**9**9**9"}', "tool_error"),
        ("calculator", '{"expression": "\\u0000"}', "invalid_arguments"),
        ("calculator", '{"expression": "\\ud800"}', "invalid_arguments"),
        ("calculator", '{"a":' * 50 + "1" + "}" * 50, "invalid_arguments"),
        ("calculator", "[" * 100_000 + "]" * 100_000, "invalid_arguments"),
        ("calculator", '{"expression": 1' + "0" * 5000 + "}", "invalid_arguments"),
        ("calculator", '{"expression": NaN}', "invalid_arguments"),
        ("nothing", '{"x": Infinity}', "invalid_arguments"),
        ("calculator", '{"expression": 1e999}', "invalid_arguments"),
        ("hangs", "{}", "tool_timeout"),
        ("explodes", "{}", "tool_failed"),
        ("refuses", "{}", "unknown_city"),
        ("not_json", "{}", "tool_failed"),
    ],
)
async def test_whatever_goes_wrong_in_a_call_ends_it_with_an_error(name, arguments, code):
    error = await error_of(name, arguments)
    assert error["code"] == code
    assert "hunter2" not in error["message"]


async def test_arguments_cut_off_for_their_size_are_refused():
    error = await error_of("calculator", '{"expression": "' + "1" * 1000, truncated=True)
    assert error == {"code": "invalid_arguments", "message": "The arguments are too long."}


async def test_a_tool_reports_progress_between_its_start_and_its_end():
    events = await run("slow_steps")

    assert [kind for kind, _ in events] == [TOOL_START, PROGRESS, PROGRESS, PROGRESS, TOOL_END]
    assert events[1][1] == {"id": "call_1", "message": "step 1 of 3", "fraction": 1 / 3}
    assert events[-1][1]["result"] == {"steps": 3}


async def test_a_tool_in_a_thread_reports_progress_too():
    events = await run("threaded_progress")

    assert [kind for kind, _ in events] == [TOOL_START, PROGRESS, TOOL_END]
    assert events[1][1]["fraction"] == 0.5


async def test_closing_a_call_stops_its_tool():
    started = asyncio.Event()
    stopped = asyncio.Event()

    @tool(name="watched")
    async def watched(context: ToolContext) -> dict[str, bool]:
        """Waits until cancelled."""
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return {}

    calls = runner.run(ToolCall("call_1", "watched", "{}"), (watched,), None)
    assert (await anext(calls)).kind == TOOL_START
    waiting = asyncio.ensure_future(anext(calls))
    await started.wait()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await calls.aclose()
    await asyncio.wait_for(stopped.wait(), 1)


async def test_a_sync_tool_stuck_past_its_timeout_ends_as_a_timeout_at_once():
    started = time.monotonic()
    error = await error_of("blocks")
    assert error["code"] == "tool_timeout"
    assert time.monotonic() - started < tools_for_tests.BLOCKS_SECONDS


async def test_when_every_tool_thread_is_stuck_a_sync_call_is_refused_at_once(settings):
    stuck = [asyncio.ensure_future(run("blocks")) for _ in range(runner.TOOL_THREADS)]
    await asyncio.gather(*stuck)  # each timed out; its thread still sleeps

    error = await error_of("threaded_progress")

    assert error["code"] == "tool_busy"
    await asyncio.sleep(tools_for_tests.BLOCKS_SECONDS)  # the threads come back
    assert "result" in (await run("threaded_progress"))[-1][1]
