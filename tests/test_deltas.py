"""Reading what deltas carry: reasoning in its three forms, and tool calls in fragments."""

import json
import re

import pytest

from chat.deltas import (
    MAX_ARGUMENTS_CHARS,
    MAX_CALLS,
    DeltaReader,
    InlineThinking,
    Malformed,
    ToolCall,
    joined,
)
from chat.events import DELTA, REASONING

TAGGED = "Intro <think>deep é thought</think>Answer <thinking>more</thinking> end"
SPLIT = [
    (DELTA, "Intro "),
    (REASONING, "deep é thought"),
    (DELTA, "Answer "),
    (REASONING, "more"),
    (DELTA, " end"),
]


def read(pieces: list[str]) -> list[tuple[str, str]]:
    """Feed the pieces to one reader; return the parts, adjacent ones of a kind joined."""
    thinking = InlineThinking()
    parts = [part for piece in pieces for part in thinking.feed(piece)] + thinking.flush()
    joined: list[tuple[str, str]] = []
    for part in parts:
        if joined and joined[-1][0] == part.kind:
            joined[-1] = (part.kind, joined[-1][1] + part.data["content"])
        else:
            joined.append((part.kind, part.data["content"]))
    return joined


def test_inline_think_tags_split_at_any_point_give_the_same_parts():
    for cut in range(len(TAGGED) + 1):
        assert read([TAGGED[:cut], TAGGED[cut:]]) == SPLIT, cut
    for first in range(0, len(TAGGED), 3):
        for second in range(first, len(TAGGED), 5):
            pieces = [TAGGED[:first], TAGGED[first:second], TAGGED[second:]]
            assert read(pieces) == SPLIT, (first, second)


def test_inline_think_tags_fed_a_character_at_a_time_give_the_same_parts():
    assert read(list(TAGGED)) == SPLIT


def test_text_that_only_looks_like_the_start_of_a_tag_is_kept_as_text():
    assert read(["1 < 2 and <b>bold</b> and <thi", "s>"]) == [
        (DELTA, "1 < 2 and <b>bold</b> and <this>")
    ]
    assert read(["ends with <thin"]) == [(DELTA, "ends with <thin")]


def test_an_unclosed_think_block_is_all_reasoning():
    assert read(["<think>still thinking when it was cut"]) == [
        (REASONING, "still thinking when it was cut")
    ]


def kinds(reader: DeltaReader, deltas: list[dict]) -> list[tuple[str, str]]:
    parts = joined([part for delta in deltas for part in reader.read(delta)])
    return [(part.kind, part.data["content"]) for part in parts]


def test_both_reasoning_fields_become_reasoning_and_one_read_is_joined_by_kind():
    reader = DeltaReader()
    deltas = [
        {"reasoning": "a"},
        {"reasoning_content": "b"},
        {"content": "c"},
        {"content": "d", "reasoning": None},
    ]
    assert kinds(reader, deltas) == [(REASONING, "ab"), (DELTA, "cd")]


def calls_of(fragment_lists: list[list[dict]]) -> list[ToolCall]:
    reader = DeltaReader()
    for fragments in fragment_lists:
        reader.read({"tool_calls": fragments})
    return reader.tool_calls.calls()


def test_tool_call_arguments_split_anywhere_are_joined_by_index():
    arguments = json.dumps({"expression": "6 × 7", "note": "é"})
    for cut in range(len(arguments) + 1):
        fragments = [
            [{"index": 0, "id": "call_1", "function": {"name": "calculator", "arguments": ""}}],
            [{"index": 0, "function": {"arguments": arguments[:cut]}}],
            [{"index": 0, "function": {"arguments": arguments[cut:]}}],
        ]
        assert calls_of(fragments) == [ToolCall("call_1", "calculator", arguments)]


def test_parallel_calls_a_reused_index_and_a_whole_call_are_each_a_call():
    fragments = [
        [
            {"index": 0, "id": "a", "function": {"name": "one", "arguments": '{"x":'}},
            {"index": 1, "id": "b", "function": {"name": "two", "arguments": "{}"}},
        ],
        [{"index": 0, "function": {"arguments": "1}"}}],
        # A server that reuses index 0 for a new call (a new id): a third call.
        [{"index": 0, "id": "c", "function": {"name": "three", "arguments": "{}"}}],
        # Ollama: a whole call in one fragment, the arguments an object.
        [{"id": "d", "function": {"name": "four", "arguments": {"y": 2}}}],
    ]
    assert calls_of(fragments) == [
        ToolCall("a", "one", '{"x":1}'),
        ToolCall("b", "two", "{}"),
        ToolCall("c", "three", "{}"),
        ToolCall("d", "four", '{"y": 2}'),
    ]


def test_a_call_without_an_id_gets_one():
    (call,) = calls_of([[{"index": 0, "function": {"name": "f", "arguments": "{}"}}]])
    assert re.fullmatch(r"call_[0-9a-f]{24}", call.id)
    assert (call.name, call.arguments) == ("f", "{}")


def test_arguments_past_the_limit_are_cut_off_and_marked():
    piece = "x" * 10_000
    fragments = [[{"index": 0, "id": "a", "function": {"name": "f"}}]] + [
        [{"index": 0, "function": {"arguments": piece}}] for _ in range(100)
    ]
    (call,) = calls_of(fragments)
    assert call.truncated
    assert len(call.arguments) <= MAX_ARGUMENTS_CHARS + len(piece)


@pytest.mark.parametrize(
    "delta",
    [
        {"tool_calls": "call"},
        {"tool_calls": [5]},
        {"tool_calls": [{"index": "0"}]},
        {"tool_calls": [{"index": 0, "function": {"name": 5}}]},
        {"content": ["a"]},
        {"reasoning": {"text": "a"}},
    ],
)
def test_a_delta_of_the_wrong_shape_is_malformed(delta):
    with pytest.raises(Malformed):
        DeltaReader().read(delta)


@pytest.mark.parametrize("bad_id", ["\ud800", "a\x00b", "x" * 101, "with space", ""])
def test_a_call_id_that_is_not_a_plain_token_is_replaced_by_a_unique_one(bad_id):
    fragments = [
        [{"index": 0, "id": bad_id or None, "function": {"name": "f", "arguments": "{}"}}],
        [{"index": 1, "id": bad_id or None, "function": {"name": "g", "arguments": "{}"}}],
    ]
    first, second = calls_of(fragments)
    assert first.id != second.id
    assert all(re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", call.id) for call in (first, second))


def test_a_call_name_is_made_storable_and_short():
    (call,) = calls_of([[{"index": 0, "id": "a", "function": {"name": "f\x00\ud800" + "n" * 100}}]])
    assert "\x00" not in call.name and len(call.name) <= 64
    call.name.encode()  # no lone surrogate left


def test_the_same_id_twice_in_a_round_makes_two_calls_with_two_ids():
    fragments = [
        [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}],
        [{"index": 1, "id": "a", "function": {"name": "g", "arguments": "{}"}}],
    ]
    assert len({call.id for call in calls_of(fragments)}) == 2


def test_calls_past_the_most_a_round_may_hold_are_dropped():
    fragments = [
        [{"index": n, "id": f"c{n}", "function": {"name": "f", "arguments": "{}"}}]
        for n in range(MAX_CALLS + 50)
    ]
    assert len(calls_of(fragments)) == MAX_CALLS
