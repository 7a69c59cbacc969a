"""Streamed Markdown cut into finished blocks, and the rendered stream that uses them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.blocks import BlockSplitter, utf16_length
from tests.asgi_client import read_events, with_query
from tests.fakeopenai import Reply
from tests.test_stream import ask, stored_answer

DOCUMENT = (
    "# Title\n\nA paragraph\nover two lines.\n\n- a list\n- of items\n\n  continued item\n\n"
    "```python\ndef f():\n\n    return 1\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    "~~~\n```\nnot a fence end\n~~~\n\n\n\nLast words 🎉"
)


def blocks_of(pieces: list[str]) -> tuple[list[str], str]:
    splitter = BlockSplitter()
    blocks = [block for piece in pieces for block in splitter.feed(piece)]
    return blocks, "".join(pieces)[sum(map(len, blocks)) :]


def test_it_cuts_at_blank_lines_outside_code_and_keeps_indented_continuations():
    blocks, rest = blocks_of([DOCUMENT])

    assert blocks == [
        "# Title\n\n",
        "A paragraph\nover two lines.\n\n",
        "- a list\n- of items\n\n  continued item\n\n",
        "```python\ndef f():\n\n    return 1\n```\n\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n",
        "~~~\n```\nnot a fence end\n~~~\n\n\n\n",
    ]
    assert rest == "Last words 🎉"


def test_an_unfinished_block_stays_open():
    assert blocks_of(["Para one\n\n", "still deciding"]) == (["Para one\n\n"], "still deciding")
    assert blocks_of(["Para one\n\n"]) == ([], "Para one\n\n")
    assert blocks_of(["```\ncode\n\nmore code"]) == ([], "```\ncode\n\nmore code")


@given(st.lists(st.integers(min_value=0, max_value=len(DOCUMENT)), max_size=30))
def test_the_blocks_do_not_depend_on_how_the_text_arrives(cuts):
    points = sorted(set(cuts))
    pieces = [DOCUMENT[a:b] for a, b in zip([0, *points], [*points, len(DOCUMENT)], strict=True)]

    assert blocks_of(pieces) == blocks_of([DOCUMENT])


def test_lengths_are_counted_as_the_browser_counts():
    assert utf16_length("a🎉é") == 4


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_the_rendered_stream_adds_each_finished_block_once(api, upstream):
    tokens = ["# Ti", "tle\n", "\nSome **bold**", " text.\n\n", "🎉 Tail"]
    upstream.reply_to("Hi", Reply(tokens=tokens))
    posted = await ask(api, "Hi")
    url = with_query(posted["generation"]["stream_url"], render="blocks")

    events = await read_events(await api.get(url))

    blocks = [e for e in events if e.event == "block"]
    assert [(b.data["start"], b.data["end"]) for b in blocks] == [(0, 9), (9, 30)]
    assert "<h1>Title</h1>" in blocks[0].data["html"]
    assert "<strong>bold</strong>" in blocks[1].data["html"]
    assert all(b.id is None for b in blocks)
    deltas = "".join(e.data["content"] for e in events if e.event == "delta")
    assert deltas == (await stored_answer(posted)).content


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_a_resumed_rendered_stream_continues_the_block_offsets(api, upstream):
    tokens = ["One.\n\n", "Two", " and more.\n\n", "Three."]
    upstream.reply_to("Hi", Reply(tokens=tokens))
    posted = await ask(api, "Hi")
    await read_events(await api.get(posted["generation"]["stream_url"]))
    url = with_query(posted["generation"]["stream_url"], render="blocks", last_event_id=2)

    events = await read_events(await api.get(url))

    blocks = [e.data for e in events if e.event == "block"]
    assert [(b["start"], b["end"]) for b in blocks] == [(6, 21)]
    assert "Two and more." in blocks[0]["html"]
