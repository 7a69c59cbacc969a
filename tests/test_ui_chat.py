"""
The AI SDK's UI message stream, judged by the AI SDK itself: its DefaultChatTransport
and readUIMessageStream (the `ai` npm package under Node) against the site under daphne,
with a personal API key and the fake OpenAI server as the model.
"""

import json
import uuid

import pytest

from chat import api_keys
from chat.models import Conversation, Message
from tests import live
from tests.fakeopenai import Reply

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker, fake_openai):
    with (
        django_db_blocker.unblock(),
        live.site(fake_openai, CHAT_TOOLS="chat.tools.builtin.calculator") as url,
    ):
        yield url


@pytest.fixture
def upstream(fake_openai):
    fake_openai.reset()
    return fake_openai


@pytest.fixture
def client(site, alice):
    key = api_keys.create(alice, "ui")[1]

    def run(scenario: str, **request: object) -> dict:
        return live.node("ui_client.mjs", scenario, {"SITE": site, "API_KEY": key}, request)

    return run


def chat_id() -> str:
    return f"chat-{uuid.uuid4().hex[:12]}"


def parts_of(message: dict) -> list[tuple]:
    """The UIMessage's parts, as (type, what they hold)."""
    found = []
    for part in message["parts"]:
        if part["type"] in ("text", "reasoning"):
            found.append((part["type"], part["text"]))
        elif part["type"] == "dynamic-tool":
            outcome = part.get("output", part.get("errorText"))
            found.append((part["type"], part["toolName"], part["input"], part["state"], outcome))
    return found


def stored(chat: str) -> Message:
    conversation = Conversation.objects.get(client_id=chat)
    return conversation.messages.filter(role="assistant").last()


def calculator_then(*tokens: object) -> Reply:
    function = {"name": "calculator", "arguments": json.dumps({"expression": "6*7"})}
    call = {"index": 0, "id": "call_1", "type": "function", "function": function}
    after = Reply(tokens=list(tokens), token_delay=0.01)
    return Reply(
        tokens=[{"reasoning": "Let me "}, {"reasoning": "compute."}, {"tool_calls": [call]}],
        token_delay=0.01,
        finish_reason="tool_calls",
        after_tools=after,
    )


def test_the_final_message_has_the_stored_text_reasoning_and_tool_parts(client, upstream):
    upstream.reply_to("6*7?", calculator_then({"reasoning": "Easy. "}, "It is ", "42."))
    chat = chat_id()

    got = client("send", chatId=chat, text="6*7?")

    message = stored(chat)
    assert got["errors"] == []
    assert got["message"]["id"] == str(message.pk)
    assert parts_of(got["message"]) == [
        ("reasoning", "Let me compute."),
        ("dynamic-tool", "calculator", {"expression": "6*7"}, "output-available", {"value": 42}),
        ("reasoning", "Easy. "),
        ("text", "It is 42."),
    ]
    assert message.content == "It is 42."
    assert message.reasoning == "Let me compute.Easy. "
    assert got["types"][:2] == ["start", "start-step"]
    assert got["types"][-2:] == ["finish-step", "finish"]
    assert got["chunks"][-1]["finishReason"] == "stop"
    assert got["types"].count("start-step") == 2  # the model went on after the tool


def test_the_stored_history_is_the_truth_and_a_second_turn_continues_it(client, upstream, alice):
    chat = chat_id()
    client("send", chatId=chat, text="First")

    got = client("send", chatId=chat, text="Second")

    assert parts_of(got["message"]) == [("text", "Echo: Second")]
    sent = upstream.requests[-1]["body"]["messages"]
    assert [m["content"] for m in sent] == ["First", "Echo: First", "Second"]
    assert Conversation.objects.filter(owner=alice, client_id=chat).count() == 1


def test_a_cut_mid_answer_then_a_reconnect_gives_the_whole_message(client, upstream):
    upstream.reply_to("Long", Reply(tokens=[f"w{i} " for i in range(40)], token_delay=0.03))
    chat = chat_id()

    got = client("send", chatId=chat, text="Long", cutAfter=6)

    assert got["before"][:2] == ["start", "start-step"]
    assert parts_of(got["message"]) == [("text", "".join(f"w{i} " for i in range(40)))]
    assert got["message"]["id"] == str(stored(chat).pk)


def test_a_finished_chats_resume_is_204(client, upstream):
    chat = chat_id()
    client("send", chatId=chat, text="Hi")

    assert client("resume", chatId=chat) == {"resumed": None}


def test_a_stop_shows_as_abort_and_keeps_what_came(client, upstream):
    upstream.reply_to("Long", Reply(tokens=[f"w{i} " for i in range(200)], token_delay=0.02))
    chat = chat_id()

    got = client("send", chatId=chat, text="Long", stopAfter=6)

    assert got["types"][-1] == "abort"
    message = stored(chat)
    assert message.status == "cancelled"
    assert parts_of(got["message"]) == [("text", message.content)]


def test_an_upstream_failure_shows_as_error(client, upstream):
    upstream.reply_to("Fail", Reply(tokens=["a "], in_band_error="boom"))
    chat = chat_id()

    got = client("send", chatId=chat, text="Fail")

    assert got["types"][-1] == "error"
    assert got["chunks"][-1]["errorText"] == stored(chat).error_message
    assert got["errors"] == [stored(chat).error_message]


def test_regenerate_answers_the_last_question_anew(client, upstream):
    chat = chat_id()
    client("send", chatId=chat, text="Hi")
    first = stored(chat)

    got = client("send", chatId=chat, trigger="regenerate-message")

    assert parts_of(got["message"]) == [("text", "Echo: Hi")]
    again = stored(chat)
    assert again.pk != first.pk and again.parent_id == first.parent_id
    # The first answer is kept aside, a version the page can switch back to.
    assert Message.objects.filter(pk=first.pk).exists()
    assert Conversation.objects.get(client_id=chat).current_leaf_id == again.pk


def test_another_users_chat_id_is_refused(client, upstream, bob):
    chat = chat_id()
    Conversation.objects.create(owner=bob, client_id=chat, model="gpt-test")

    got = client("send", chatId=chat, text="Hi")

    assert "No such chat." in got["thrown"]
    assert not Message.objects.filter(conversation__client_id=chat).exists()
