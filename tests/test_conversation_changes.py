"""Titles, renaming, regenerating and editing: a conversation changes after its start."""

import pytest

from chat import generation
from chat.models import Conversation, Generation, Message
from tests.asgi_client import read_events
from tests.fakeopenai import Reply

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


async def start(api, prompt: str, **fields) -> tuple[dict, dict]:
    conversation = await (await api.post("/api/conversations/", fields)).json()
    posted = await (
        await api.post(f"/api/conversations/{conversation['id']}/messages/", {"content": prompt})
    ).json()
    await read_events(await api.get(posted["generation"]["stream_url"]))
    await generation.wait_all()
    return conversation, posted


async def title_of(conversation: dict) -> str:
    return (await Conversation.objects.aget(pk=conversation["id"])).title


async def test_the_model_titles_a_conversation_after_its_first_answer(api, upstream):
    upstream.reply_to("Title?", Reply(tokens=['"Why ', "Tides ", 'Happen."']))

    conversation, _ = await start(api, "Why are there two tides a day, " * 5)

    assert await title_of(conversation) == "Why Tides Happen"
    title_request = upstream.requests[-1]["body"]
    assert title_request["stream"] is False if "stream" in title_request else True
    assert title_request["messages"][1]["content"].startswith("Why are there two tides")


async def test_only_the_first_answer_asks_the_model_for_a_title(api, upstream):
    upstream.reply_to("Title?", Reply(tokens=["Tides"]))
    conversation, _ = await start(api, "Why are there tides?")
    asked = len(upstream.requests)

    posted = await (
        await api.post(f"/api/conversations/{conversation['id']}/messages/", {"content": "And?"})
    ).json()
    await read_events(await api.get(posted["generation"]["stream_url"]))
    await generation.wait_all()

    assert asked == 2  # the answer and its title
    assert [r["body"]["messages"][-1]["content"] for r in upstream.requests[asked:]] == ["And?"]
    assert await title_of(conversation) == "Tides"


async def test_without_a_model_title_the_first_words_stay(api, upstream):
    upstream.reply_to("Title?", Reply(tokens=[], status=500))

    conversation, _ = await start(api, "Why are there two tides a day " * 5)

    title = await title_of(conversation)
    assert title.startswith("Why are there two tides a day Why")
    assert title.endswith("…")
    assert len(title) <= 60


async def test_the_demo_model_keeps_the_first_words_as_title(api, settings):
    settings.CHAT_MODEL, settings.CHAT_MODELS, settings.CHAT_DEMO_TOKEN_DELAY = "demo", ["demo"], 0

    conversation, _ = await start(api, "Hello   there\nfriend")

    assert await title_of(conversation) == "Hello there friend"


async def test_a_title_the_user_chose_is_never_replaced(api, upstream):
    conversation, _ = await start(api, "Hi", title="Mine")

    assert await title_of(conversation) == "Mine"
    assert upstream.completed == 1 and len(upstream.requests) == 1


async def test_renaming_sets_the_title_for_good(api, upstream):
    conversation, _ = await start(api, "Hi")

    response = await api.request(
        "PATCH",
        f"/api/conversations/{conversation['id']}/",
        body=b'{"title": "  Tide tables  "}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status == 200
    assert (await response.json())["title"] == "Tide tables"
    stored = await Conversation.objects.aget(pk=conversation["id"])
    assert (stored.title, stored.auto_title) == ("Tide tables", False)


@pytest.mark.parametrize("body", [b'{"title": ""}', b'{"title": 3}', b"{}"])
async def test_a_bad_rename_is_refused(api, upstream, body):
    conversation, _ = await start(api, "Hi")
    before = await title_of(conversation)

    response = await api.request(
        "PATCH",
        f"/api/conversations/{conversation['id']}/",
        body=body,
        headers={"Content-Type": "application/json"},
    )

    assert response.status == 400
    assert await title_of(conversation) == before


async def test_regenerate_adds_a_version_of_the_last_answer_and_keeps_the_old(api, upstream):
    conversation, first = await start(api, "Hi")

    response = await api.post(f"/api/conversations/{conversation['id']}/regenerate", {})
    posted = await response.json()
    events = await read_events(await api.get(posted["generation"]["stream_url"]))

    assert response.status == 202
    assert posted["message"]["id"] == first["message"]["id"]
    assert events[-1].event == "done"
    messages = [m async for m in Message.objects.filter(conversation=conversation["id"])]
    assert [m.role for m in messages] == ["user", "assistant", "assistant"]
    assert {str(m.parent_id) for m in messages[1:]} == {first["message"]["id"]}
    regenerated = await Generation.objects.select_related("message").aget(
        pk=posted["generation"]["id"]
    )
    assert regenerated.regenerated
    assert await Generation.objects.filter(pk=first["generation"]["id"]).aexists()
    shown = await Conversation.objects.aget(pk=conversation["id"])
    assert shown.current_leaf_id == regenerated.message.pk


async def test_editing_the_last_message_asks_it_anew_beside_the_old(api, upstream):
    conversation, first = await start(api, "Hi")

    posted = await (
        await api.post(f"/api/conversations/{conversation['id']}/regenerate", {"content": "Bye"})
    ).json()
    events = await read_events(await api.get(posted["generation"]["stream_url"]))

    assert "".join(e.data["content"] for e in events if e.event == "delta") == "Echo: Bye"
    streamed = [r["body"] for r in upstream.requests if r["body"].get("stream")]
    assert streamed[-1]["messages"] == [{"role": "user", "content": "Bye"}]
    assert posted["message"]["id"] != first["message"]["id"]
    assert posted["message"]["parent_id"] is None
    old = await Message.objects.aget(pk=first["message"]["id"])
    assert old.content == "Hi"


async def test_regenerate_without_a_question_or_while_streaming_is_refused(api, upstream, alice):
    empty = await (await api.post("/api/conversations/", {})).json()
    nothing = await api.post(f"/api/conversations/{empty['id']}/regenerate", {})

    upstream.reply_to("slow", Reply(tokens=["a "] * 50, token_delay=0.02))
    conversation = await (await api.post("/api/conversations/", {})).json()
    await api.post(f"/api/conversations/{conversation['id']}/messages/", {"content": "slow"})
    busy = await api.post(f"/api/conversations/{conversation['id']}/regenerate", {})

    assert (nothing.status, (await nothing.json())["error"]["code"]) == (409, "nothing_to_answer")
    assert (busy.status, (await busy.json())["error"]["code"]) == (409, "busy")


async def test_a_model_can_have_its_own_endpoint_and_key(api, upstream, settings):
    settings.CHAT_MODELS = ["gpt-test", "elsewhere"]
    settings.CHAT_MODEL_ENDPOINTS = {
        "elsewhere": {"label": "Elsewhere", "base_url": upstream.base_url, "api_key": "other-key"}
    }

    await start(api, "Hi", model="elsewhere", title="t")

    assert upstream.requests[0]["headers"]["authorization"] == "Bearer other-key"
    assert upstream.requests[0]["body"]["model"] == "elsewhere"
