"""Reasoning and tool calls in a real browser: streamed, kept across a reload, stopped."""

import json

import pytest

from chat.models import Message
from tests.e2e.test_browser import WAIT_MS, answer_text, send, wait_finished, words
from tests.fakeopenai import Reply

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def calls(name: str, arguments: dict) -> dict:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": function}]}


def test_reasoning_and_a_tool_card_stream_and_survive_a_reload(
    open_session, alice_user, upstream_fake
):
    thoughts = [{"reasoning": f"thought{n} "} for n in range(15)]
    then = Reply(tokens=words(60), token_delay=0.05)
    upstream_fake.reply_to(
        "Think, then add",
        Reply(
            tokens=[*thoughts, calls("calculator", {"expression": "6*7"})],
            token_delay=0.05,
            finish_reason="tool_calls",
            after_tools=then,
        ),
    )
    session = open_session(alice_user)
    page = session.page
    session.goto("/")

    send(page, "Think, then add")
    page.wait_for_selector(".msg--streaming .thinking[open] >> text=thought3", timeout=WAIT_MS)
    assert page.locator(".msg--streaming .thinking summary").inner_text() == "Thinking…"
    page.wait_for_selector(".msg--streaming .toolcard--done >> text=calculator", timeout=WAIT_MS)
    assert page.locator(".msg--streaming .thinking").get_attribute("open") is None
    assert page.locator(".msg--streaming .thinking summary").inner_text().startswith("Thought for")
    page.wait_for_selector(".msg--streaming >> text=w5", timeout=WAIT_MS)
    session.shot("tool-card-streaming")

    page.reload()
    page.wait_for_selector(".msg--streaming .toolcard >> text=calculator", timeout=WAIT_MS)
    wait_finished(page)

    bubble = page.locator(".msg--assistant").last
    assert bubble.locator(".toolcard").count() == 1
    bubble.locator(".toolcard summary").click()
    assert '"value": 42' in bubble.locator(".toolcard [data-outcome]").inner_text()
    bubble.locator(".thinking summary").click()
    assert "thought14" in bubble.locator(".thinking__text").inner_text()
    assert bubble.locator(".thinking summary").inner_text().startswith("Thought for")
    assert answer_text(page).split() == [f"w{n}" for n in range(60)]
    assert "thought" not in answer_text(page)
    session.shot("tool-card-finished")
    assert not session.csp_errors


def test_stop_during_a_tool_run_keeps_the_card_as_stopped(open_session, alice_user, upstream_fake):
    upstream_fake.reply_to(
        "Work",
        Reply(tokens=[calls("slow_steps", {"steps": 200})], finish_reason="tool_calls"),
    )
    session = open_session(alice_user)
    page = session.page
    session.goto("/")

    send(page, "Work")
    card = page.locator(".msg--streaming .toolcard--running")
    card.wait_for(timeout=WAIT_MS)
    card.locator("summary").click()
    page.wait_for_selector(".msg--streaming .toolcard progress", timeout=WAIT_MS)
    page.get_by_role("button", name="Stop").click()

    page.wait_for_selector(".msg--cancelled .toolcard--stopped", timeout=WAIT_MS)
    message = Message.objects.get(role="assistant")
    assert message.status == "cancelled"
    assert message.tool_calls == [
        {"id": "call_1", "name": "slow_steps", "arguments": {"steps": 200}}
    ]
    assert not session.csp_errors
