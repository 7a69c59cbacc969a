"""The AI SDK endpoint's requests, through the real ASGI application: what it refuses."""

import pytest

from chat.models import Conversation, Message

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
    unknown = await api.get(f"{UI_CHAT}/chat-2/stream")

    assert (resumed.status, stopped.status, unknown.status) == (204, 202, 404)
    assert await stopped.json() == {"stopped": False}
