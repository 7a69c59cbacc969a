"""The AI SDK endpoint's requests, through the real ASGI application: what it refuses."""

import pytest

from chat.models import Conversation, Message
from tests.fakeopenai import Reply

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

UI_CHAT = "/api/ui/chat"


def body(text: object = "Hi", **fields: object) -> dict:
    message = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": text}]}
    return {"id": "chat-1", "trigger": "submit-message", "messages": [message], **fields}


async def test_the_answer_is_the_ui_message_stream_with_its_headers(api, upstream):
    response = await api.post(UI_CHAT, body())
    raw = await response.body()

    assert response.status == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["cache-control"] == "no-cache, no-transform"
    assert response.headers["x-accel-buffering"] == "no"
    assert raw.startswith(b': open\n\ndata: {"type":"start"')
    assert raw.endswith(b"data: [DONE]\n\n")
    assert await Conversation.objects.filter(client_id="chat-1").aexists()


@pytest.mark.parametrize(
    "sent",
    [
        body(id="has space"),
        body(id="x" * 101),
        body(id=5),
        body(trigger="edit-message"),
        body(messages=[]),
        body(messages=[{"role": "assistant", "parts": [{"type": "text", "text": "Hi"}]}]),
        body(messages=[{"role": "user", "parts": [{"type": "file", "url": "data:,x"}]}]),
        body(text=" "),
        body(text="x" * 20_001),
        body(text=5),
    ],
)
async def test_a_bad_request_is_refused_and_makes_nothing(api, upstream, sent):
    response = await api.post(UI_CHAT, sent)

    assert response.status == 400
    assert not await Conversation.objects.aexists()
    assert upstream.requests == []


async def test_a_refused_first_message_leaves_no_chat_behind(api, upstream, settings):
    settings.CHAT_MAX_CONCURRENT = 1
    settings.CHAT_RATE_LIMITS = {"hour": 1}
    await (await api.post(UI_CHAT, body())).body()

    refused = await api.post(UI_CHAT, body(id="chat-2"))

    assert refused.status == 429
    assert not await Conversation.objects.filter(client_id="chat-2").aexists()


async def test_regenerating_a_chat_that_does_not_exist_answers_nothing(api, upstream):
    response = await api.post(UI_CHAT, body(trigger="regenerate-message"))

    assert response.status == 409
    assert not await Message.objects.aexists()


async def test_resuming_or_stopping_a_chat_with_no_answer_running(api, upstream):
    await (await api.post(UI_CHAT, body())).body()

    resumed = await api.get(f"{UI_CHAT}/chat-1/stream")
    stopped = await api.post(f"{UI_CHAT}/chat-1/stop")

    assert (resumed.status, stopped.status) == (204, 202)
    assert await stopped.json() == {"stopped": False}


async def test_resuming_a_chat_not_made_yet_is_204_as_for_one_with_nothing_running(api, upstream):
    # useChat with resume: true asks before its first message.
    assert (await api.get(f"{UI_CHAT}/chat-new/stream")).status == 204


async def test_another_users_chat_is_404_to_post_stop_or_read(api, bob_api, upstream):
    await (await api.post(UI_CHAT, body())).body()

    assert (await bob_api.get(f"{UI_CHAT}/chat-1/stream")).status == 204  # nothing of bob's
    assert (await bob_api.get(f"{UI_CHAT}/chat-1/messages")).status == 404
    assert (await bob_api.post(f"{UI_CHAT}/chat-1/stop")).status == 404
    assert (await bob_api.post(UI_CHAT, body(text="Mine now"))).status == 404


async def test_the_stored_history_reads_back_as_ui_messages(api, upstream, settings):
    settings.CHAT_TOOLS = ["chat.tools.builtin.calculator"]
    function = {"name": "calculator", "arguments": '{"expression": "6*7"}'}
    call = {"index": 0, "id": "c1", "type": "function", "function": function}
    upstream.reply_to(
        "Sum",
        Reply(
            tokens=[{"reasoning": "hm"}, {"tool_calls": [call]}],
            finish_reason="tool_calls",
            after_tools=Reply(tokens=["42"]),
        ),
    )
    await (await api.post(UI_CHAT, body("Sum"))).body()

    history = (await (await api.get(f"{UI_CHAT}/chat-1/messages")).json())["messages"]

    answer = await Message.objects.aget(role="assistant")
    assert [(m["role"], m["id"]) for m in history][1] == ("assistant", str(answer.pk))
    assert history[0]["parts"] == [{"type": "text", "text": "Sum"}]
    assert history[1]["parts"] == [
        {"type": "reasoning", "text": "hm", "state": "done"},
        {
            "type": "dynamic-tool",
            "toolName": "calculator",
            "toolCallId": "c1",
            "state": "output-available",
            "input": {"expression": "6*7"},
            "output": {"value": 42},
        },
        {"type": "text", "text": "42", "state": "done"},
    ]


async def test_an_edit_of_the_last_message_answers_it_anew(api, upstream):
    await (await api.post(UI_CHAT, body("First"))).body()
    answer = await Message.objects.aget(role="assistant")
    edited = body("First, edited", messageId="m1")

    await (await api.post(UI_CHAT, edited)).body()

    contents = [m.content async for m in Message.objects.order_by("created_at")]
    assert contents == ["First", "Echo: First", "First, edited", "Echo: First, edited"]
    assert await Message.objects.filter(pk=answer.pk).aexists()  # a version kept aside
    history = await (await api.get(f"{UI_CHAT}/chat-1/messages")).json()
    texts = [part["text"] for m in history["messages"] for part in m["parts"] if "text" in part]
    assert texts == ["First, edited", "Echo: First, edited"]


async def test_an_edit_of_an_earlier_message_is_refused(api, upstream):
    await (await api.post(UI_CHAT, body("One"))).body()
    second = body("Two")
    second["messages"] = [
        {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "One"}]},
        {"id": "a1", "role": "assistant", "parts": [{"type": "text", "text": "Echo: One"}]},
        {"id": "m2", "role": "user", "parts": [{"type": "text", "text": "Two"}]},
    ]
    await (await api.post(UI_CHAT, second)).body()

    refused = await api.post(UI_CHAT, body("One, edited", messageId="m1"))

    assert refused.status == 400
    assert await Message.objects.acount() == 4


async def test_regenerating_an_answer_that_is_not_the_last_is_refused(api, upstream):
    await (await api.post(UI_CHAT, body("One"))).body()
    answer = await Message.objects.aget(role="assistant")

    stale = await api.post(UI_CHAT, body(trigger="regenerate-message", messageId="nope"))
    fresh = await api.post(UI_CHAT, body(trigger="regenerate-message", messageId=str(answer.pk)))

    assert (stale.status, fresh.status) == (400, 200)
