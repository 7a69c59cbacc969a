"""
Branches and Continue: nothing said is deleted; regenerate and edit add versions of a
turn, the branch on screen is what the page, the exports, the API and the model see, and
a cut-off or stopped answer goes on in the same message, its stream the stored answer.
"""

import json
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse

from chat import generation, services
from chat.eventlog import EventLogUnavailable, get_event_log
from chat.models import Conversation, Generation, Message, Usage
from chat.turns import CONTINUE_PROMPT
from tests.asgi_client import AsgiClient, read_events, read_until
from tests.fakeopenai import Reply

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

HTMX = {"HX-Request": "true"}


async def new_conversation(api: AsgiClient) -> str:
    return (await (await api.post("/api/conversations/", {})).json())["id"]


async def answered(api: AsgiClient, url: str, body: dict) -> dict:
    """Post, read the answer's stream to its end, and return the 202's body."""
    response = await api.post(url, body)
    assert response.status == 202, await response.body()
    posted = await response.json()
    await read_events(await api.get(posted["generation"]["stream_url"]))
    await generation.wait_all()
    return posted


async def say(api: AsgiClient, conversation: str, content: str, **fields) -> dict:
    body = {"content": content, **fields}
    return await answered(api, f"/api/conversations/{conversation}/messages/", body)


async def post_form(api: AsgiClient, path: str, fields: dict, headers: dict | None = None):
    content_type = {"Content-Type": "application/x-www-form-urlencoded"}
    return await api.request(
        "POST", path, body=urlencode(fields).encode(), headers={**content_type, **(headers or {})}
    )


async def edit(api: AsgiClient, conversation: str, posted: dict, content: str) -> dict:
    """Ask the question `posted` anew with this text: a new version of it, answered."""
    body = {"message_id": posted["message"]["id"], "content": content}
    return await answered(api, f"/api/conversations/{conversation}/regenerate", body)


async def tree(api: AsgiClient, conversation: str) -> dict:
    return await (await api.get(f"/api/conversations/{conversation}/")).json()


def contents(data: dict) -> list[str]:
    """The text of the branch on screen, from the API's tree."""
    by_id = {message["id"]: message for message in data["messages"]}
    return [by_id[message_id]["content"] for message_id in data["branch"]]


def last_request(upstream) -> list[dict]:
    return [r["body"] for r in upstream.requests if r["body"].get("stream")][-1]["messages"]


async def test_editing_an_early_question_forks_and_both_branches_stay_whole(api, upstream):
    conversation = await new_conversation(api)
    first = await say(api, conversation, "one")
    await say(api, conversation, "two")
    await say(api, conversation, "three")

    edited = await edit(api, conversation, first, "ONE")

    data = await tree(api, conversation)
    assert contents(data) == ["ONE", "Echo: ONE"]
    assert last_request(upstream) == [{"role": "user", "content": "ONE"}]
    assert edited["message"]["parent_id"] is None
    assert len(data["messages"]) == 8

    back = await api.post(
        f"/api/conversations/{conversation}/switch", {"message_id": first["message"]["id"]}
    )

    assert back.status == 200
    assert contents(await back.json()) == [
        "one",
        "Echo: one",
        "two",
        "Echo: two",
        "three",
        "Echo: three",
    ]


async def test_a_new_message_follows_the_branch_on_screen_and_the_model_sees_only_it(api, upstream):
    conversation = await new_conversation(api)
    first = await say(api, conversation, "one")
    await edit(api, conversation, first, "uno")
    await api.post(
        f"/api/conversations/{conversation}/switch", {"message_id": first["message"]["id"]}
    )

    await say(api, conversation, "two")

    assert last_request(upstream) == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Echo: one"},
        {"role": "user", "content": "two"},
    ]
    assert contents(await tree(api, conversation)) == ["one", "Echo: one", "two", "Echo: two"]


async def test_regenerate_keeps_every_version_and_switching_shows_each(api, upstream):
    conversation = await new_conversation(api)
    upstream.reply_to("Hi", Reply(tokens=["first"]))
    first = await say(api, conversation, "Hi")
    upstream.reply_to("Hi", Reply(tokens=["second"]))
    second = await answered(api, f"/api/conversations/{conversation}/regenerate", {})
    answers = [first["generation"]["id"], second["generation"]["id"]]
    answer_ids = [str((await Generation.objects.aget(pk=pk)).message_id) for pk in answers]

    assert contents(await tree(api, conversation)) == ["Hi", "second"]
    switched = await api.post(
        f"/api/conversations/{conversation}/switch", {"message_id": answer_ids[0]}
    )
    shown = await switched.json()
    assert contents(shown) == ["Hi", "first"]
    assert shown["current_leaf_id"] == answer_ids[0]


async def test_the_api_exposes_the_tree(api, upstream):
    conversation = await new_conversation(api)
    first = await say(api, conversation, "Hi")
    await answered(api, f"/api/conversations/{conversation}/regenerate", {})

    data = await tree(api, conversation)

    question = first["message"]["id"]
    assert [(m["role"], m["parent_id"]) for m in data["messages"]] == [
        ("user", None),
        ("assistant", question),
        ("assistant", question),
    ]
    assert data["branch"] == [question, data["messages"][2]["id"]]
    assert data["current_leaf_id"] == data["messages"][2]["id"]


async def test_a_message_can_be_posted_under_any_answer(api, upstream):
    conversation = await new_conversation(api)
    first = await say(api, conversation, "one")
    await say(api, conversation, "two")
    first_answer = (await tree(api, conversation))["branch"][1]

    forked = await say(api, conversation, "two, again", parent_id=first_answer)

    assert forked["message"]["parent_id"] == first_answer
    assert contents(await tree(api, conversation)) == [
        "one",
        "Echo: one",
        "two, again",
        "Echo: two, again",
    ]
    root = await say(api, conversation, "another start", parent_id=None)
    assert root["message"]["parent_id"] is None
    assert first["message"]["parent_id"] is None


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"content": "x", "parent_id": "not an id"}, "messages/"),
        ({"content": "x", "parent_id": 7}, "messages/"),
        ({"content": "x", "parent_id": "QUESTION"}, "messages/"),  # a question, not an answer
        ({"content": "x", "parent_id": "FOREIGN"}, "messages/"),
        ({"message_id": "ANSWER"}, "regenerate"),  # an answer, not a question
        ({"message_id": "FOREIGN"}, "regenerate"),
        ({"message_id": "not an id"}, "switch"),
        ({"message_id": "FOREIGN"}, "switch"),
        ({}, "switch"),
    ],
)
async def test_a_message_id_that_is_not_of_this_conversation_is_refused_and_changes_nothing(
    api, upstream, body, path
):
    conversation = await new_conversation(api)
    posted = await say(api, conversation, "Hi")
    other = await new_conversation(api)
    elsewhere = await say(api, other, "Elsewhere")
    ids = {
        "QUESTION": posted["message"]["id"],
        "ANSWER": (await tree(api, conversation))["branch"][1],
        "FOREIGN": elsewhere["message"]["id"],
    }
    body = {key: ids.get(value, value) for key, value in body.items()}
    before = await tree(api, conversation)

    response = await api.post(f"/api/conversations/{conversation}/{path}", body)

    assert response.status == 400
    assert (await response.json())["error"]["code"] in ("invalid_message", "invalid_field")
    assert await tree(api, conversation) == before


async def test_exports_follow_the_branch_on_screen(api, upstream, alice):
    conversation = await new_conversation(api)
    first = await say(api, conversation, "the old question")
    await edit(api, conversation, first, "the new question")

    markdown = await (await api.get(reverse("chat:export-markdown", args=[conversation]))).body()
    exported = json.loads(
        await (await api.get(reverse("chat:export-json", args=[conversation]))).body()
    )

    assert b"the new question" in markdown and b"the old question" not in markdown
    assert [m["content"] for m in exported["messages"]] == [
        "the new question",
        "Echo: the new question",
    ]


async def test_the_sidebar_search_finds_text_in_any_branch(api, upstream):
    conversation = await new_conversation(api)
    first = await say(api, conversation, "the word aardvark")
    await edit(api, conversation, first, "no animals here")

    html = (await (await api.get(reverse("chat:sidebar") + "?q=aardvark")).body()).decode()

    assert f"/c/{conversation}/" in html


async def test_the_page_shows_versions_and_switches_between_them(api, upstream):
    conversation = await new_conversation(api)
    first = await say(api, conversation, "one")
    await edit(api, conversation, first, "uno")
    page = (await (await api.get(f"/c/{conversation}/")).body()).decode()
    assert ">2/2<" in page and ">uno</div>" in page and ">one</div>" not in page

    response = await post_form(
        api, reverse("chat:switch", args=[conversation]), {"message": first["message"]["id"]}, HTMX
    )

    html = (await response.body()).decode()
    assert response.status == 200
    assert ">1/2<" in html and ">one</div>" in html and ">uno</div>" not in html
    assert "<html" not in html


async def test_editing_an_early_question_on_the_page_answers_it_as_a_new_version(api, upstream):
    conversation = await new_conversation(api)
    first = await say(api, conversation, "one")
    await say(api, conversation, "two")

    response = await post_form(
        api,
        reverse("chat:edit", args=[conversation]),
        {"message": first["message"]["id"], "content": "ONE"},
    )
    await generation.wait_all()

    assert response.status == 302
    assert contents(await tree(api, conversation)) == ["ONE", "Echo: ONE"]
    assert await Message.objects.filter(conversation=conversation).acount() == 6


async def test_migrating_keeps_existing_conversations_whole(alice):
    await sync_to_async(migrate_a_conversation_of_before_branches)(alice)


def migrate_a_conversation_of_before_branches(alice) -> None:
    before = [("chat", "0007_ui_chat_ids")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    old_conversation = apps.get_model("chat", "Conversation")
    old_message = apps.get_model("chat", "Message")
    made = old_conversation.objects.create(owner_id=alice.pk, model="demo")
    ids = [
        old_message.objects.create(conversation=made, role=role, content=text).pk
        for role, text in [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]
    ]

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    messages = {m.pk: m for m in Message.objects.filter(conversation=made.pk)}
    assert [messages[pk].parent_id for pk in ids] == [None, *ids[:-1]]
    assert Conversation.objects.get(pk=made.pk).current_leaf_id == ids[-1]


# Continue


async def cut_off(api: AsgiClient, upstream, conversation: str) -> dict:
    upstream.reply_to("Tell me", Reply(tokens=["Once ", "upon ", "a"], finish_reason="length"))
    upstream.reply_to(CONTINUE_PROMPT, Reply(tokens=[" time", ", the ", "end."]))
    return await say(api, conversation, "Tell me")


async def test_continue_appends_to_the_same_answer_and_the_stream_is_the_stored_answer(
    api, upstream
):
    conversation = await new_conversation(api)
    first = await cut_off(api, upstream, conversation)
    answer_id = (await tree(api, conversation))["branch"][1]

    response = await api.post(f"/api/conversations/{conversation}/continue", {})
    posted = await response.json()
    events = await read_events(await api.get(posted["generation"]["stream_url"]))
    await generation.wait_all()

    assert response.status == 202
    assert posted["message"]["id"] == first["message"]["id"]
    streamed = "".join(e.data["content"] for e in events if e.event == "delta")
    stored = await Message.objects.aget(pk=answer_id)
    assert streamed == stored.content == "Once upon a time, the end."
    assert (stored.status, stored.finish_reason) == ("complete", "stop")
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert last_request(upstream) == [
        {"role": "user", "content": "Tell me"},
        {"role": "assistant", "content": "Once upon a"},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]
    assert await Message.objects.filter(conversation=conversation).acount() == 2
    # What the cut-off answer cost stays counted, beside what the continuation cost.
    assert await Usage.objects.filter(user__username="alice").acount() == 2


async def test_a_continued_answer_resumes_from_any_event_without_a_gap_or_a_repeat(api, upstream):
    conversation = await new_conversation(api)
    await cut_off(api, upstream, conversation)
    posted = await (await api.post(f"/api/conversations/{conversation}/continue", {})).json()
    url = posted["generation"]["stream_url"]
    events = await read_events(await api.get(url))
    await generation.wait_all()
    whole = "".join(e.data["content"] for e in events if e.event == "delta")

    for last in range(len(events)):
        resumed = await read_events(await api.get(url, headers={"Last-Event-ID": str(last)}))
        before = "".join(e.data["content"] for e in events[:last] if e.event == "delta")
        after = "".join(e.data["content"] for e in resumed if e.event == "delta")
        assert before + after == whole
        assert resumed[-1].event == "done"


async def test_a_stopped_answer_can_be_continued(api, upstream):
    conversation = await new_conversation(api)
    upstream.reply_to("slow", Reply(tokens=["a "] * 200, token_delay=0.02))
    posted = await api.post(f"/api/conversations/{conversation}/messages/", {"content": "slow"})
    started = await posted.json()
    stream = await api.get(started["generation"]["stream_url"])
    await read_until(stream, 2)  # some of the answer is written
    await api.post(started["generation"]["cancel_url"], {})
    await stream.body()
    await generation.wait_all()
    answer = await Message.objects.aget(pk=(await tree(api, conversation))["branch"][1])
    assert answer.status == "cancelled"
    upstream.reply_to(CONTINUE_PROMPT, Reply(tokens=["b"]))

    continued = await answered(api, f"/api/conversations/{conversation}/continue", {})

    await answer.arefresh_from_db()
    assert continued["message"]["id"] == started["message"]["id"]
    assert answer.content.endswith("a b") and answer.status == "complete"


async def test_a_finished_answer_cannot_be_continued_and_nothing_changes(api, upstream):
    conversation = await new_conversation(api)
    await say(api, conversation, "Hi")
    before = await tree(api, conversation)

    response = await api.post(f"/api/conversations/{conversation}/continue", {})

    assert response.status == 409
    assert (await response.json())["error"]["code"] == "nothing_to_continue"
    assert await tree(api, conversation) == before
    empty = await new_conversation(api)
    assert (await api.post(f"/api/conversations/{empty}/continue", {})).status == 409


async def test_the_page_offers_continue_on_a_cut_off_answer_and_streams_it_in_place(api, upstream):
    conversation = await new_conversation(api)
    await cut_off(api, upstream, conversation)
    # Slow enough to be still streaming when the page shows it.
    upstream.reply_to(CONTINUE_PROMPT, Reply(tokens=[" time", ", the ", "end."], token_delay=0.2))
    page = (await (await api.get(f"/c/{conversation}/")).body()).decode()
    assert "data-continue" in page and "cut off at the length limit" in page

    response = await post_form(api, reverse("chat:continue", args=[conversation]), {}, HTMX)

    html = (await response.body()).decode()
    assert response.status == 200
    assert "msg--streaming" in html and "data-continue" not in html
    await generation.wait_all()
    shown = (await (await api.get(f"/c/{conversation}/")).body()).decode()
    assert "Once upon a time, the end." in shown and "data-continue" not in shown


async def test_the_demo_model_cuts_a_long_answer_off_and_continues_it(api, settings):
    settings.CHAT_MODEL, settings.CHAT_MODELS, settings.CHAT_DEMO_TOKEN_DELAY = "demo", ["demo"], 0
    conversation = await new_conversation(api)
    await say(api, conversation, "Write a long answer")
    answer = await Message.objects.aget(pk=(await tree(api, conversation))["branch"][1])
    assert answer.finish_reason == "length"

    await answered(api, f"/api/conversations/{conversation}/continue", {})

    await answer.arefresh_from_db()
    assert answer.finish_reason == "stop"
    assert answer.content.rstrip().endswith("the end of the demo's long answer.")
    assert answer.content.count("offline demo model") == 1


async def test_a_continue_that_cannot_start_keeps_the_answer_as_it_was(api, upstream, alice):
    conversation = await new_conversation(api)
    await cut_off(api, upstream, conversation)
    answer = await Message.objects.aget(pk=(await tree(api, conversation))["branch"][1])
    found = await Conversation.objects.aget(pk=conversation)
    await Conversation.objects.filter(pk=conversation).aupdate(model="withdrawn")

    with pytest.raises(services.Refused):
        await services.answer_continue(conversation=found)

    stored = await Message.objects.aget(pk=answer.pk)
    assert (stored.content, stored.status, stored.finish_reason) == (
        "Once upon a",
        "complete",
        "length",
    )
    assert await sync_to_async(Generation.objects.filter(message=answer).count)() == 1


async def test_the_admin_transcript_follows_the_branch_on_screen(api, upstream, alice):
    conversation = await new_conversation(api)
    first = await say(api, conversation, "the old question")
    await edit(api, conversation, first, "the new question")

    html = await sync_to_async(admin_page)(conversation)

    assert "the new question" in html and "the old question" not in html
    assert "2 of 2" in html


def admin_page(conversation: str) -> str:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    url = reverse("admin:chat_conversation_change", args=[conversation])
    return client.get(url).content.decode()


async def test_continuing_an_answer_that_called_a_tool_sends_its_rounds_back(
    api, upstream, settings
):
    settings.CHAT_TOOLS = ["chat.tools.builtin.calculator"]
    call = {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'},
            }
        ]
    }
    cut = Reply(tokens=["The answer ", "is"], finish_reason="length")
    upstream.reply_to("Sum?", Reply(tokens=[call], finish_reason="tool_calls", after_tools=cut))
    upstream.reply_to(CONTINUE_PROMPT, Reply(tokens=[" 42."]))
    conversation = await new_conversation(api)
    await say(api, conversation, "Sum?")

    continued = await answered(api, f"/api/conversations/{conversation}/continue", {})

    sent = last_request(upstream)
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "calculator"
    assert sent[3] == {"role": "assistant", "content": "The answer is"}
    answer = await Message.objects.aget(role="assistant")
    assert answer.content == "The answer is 42."
    assert len(answer.tool_calls) == 1 and answer.tool_calls[0]["result"] == {"value": 42}
    assert continued["message"]["content"] == "Sum?"


async def test_a_continued_answer_is_billed_once_for_what_it_had_already_written(
    api, upstream, alice
):
    conversation = await new_conversation(api)
    upstream.reply_to("Tell me", Reply(tokens=["word "] * 50, finish_reason="length"))
    await say(api, conversation, "Tell me")
    first = await Usage.objects.aget()
    answer = await Message.objects.aget(role="assistant")
    upstream.reply_to(CONTINUE_PROMPT, Reply(tokens=["end."], usage=False))

    await answered(api, f"/api/conversations/{conversation}/continue", {})

    second = await Usage.objects.exclude(pk=first.pk).aget()
    assert second.estimated and second.completion_tokens <= 3
    await answer.arefresh_from_db()
    assert answer.completion_tokens == first.completion_tokens + second.completion_tokens
    assert answer.prompt_tokens == first.prompt_tokens + second.prompt_tokens


async def test_a_continue_whose_event_log_fails_keeps_the_answer_and_it_can_go_on_later(
    api, upstream, monkeypatch
):
    conversation = await new_conversation(api)
    await cut_off(api, upstream, conversation)
    answer = await Message.objects.aget(role="assistant")

    async def unavailable(self, key):
        raise EventLogUnavailable("down")

    log_class = type(get_event_log())
    with monkeypatch.context() as patched:
        patched.setattr(log_class, "open", unavailable)
        refused = await api.post(f"/api/conversations/{conversation}/continue", {})

    assert refused.status == 503
    await answer.arefresh_from_db()
    assert answer.content == "Once upon a"
    assert await Usage.objects.acount() == 1  # nothing was asked of the model
    continued = await api.post(f"/api/conversations/{conversation}/continue", {})
    assert continued.status == 202


async def test_versions_switch_in_a_conversation_whose_model_was_withdrawn(api, upstream):
    conversation = await new_conversation(api)
    first = await say(api, conversation, "one")
    await answered(api, f"/api/conversations/{conversation}/regenerate", {})
    await Conversation.objects.filter(pk=conversation).aupdate(model="withdrawn")
    answers = (await tree(api, conversation))["messages"]

    switched = await api.post(
        f"/api/conversations/{conversation}/switch", {"message_id": answers[1]["id"]}
    )

    assert switched.status == 200
    assert (await switched.json())["branch"] == [first["message"]["id"], answers[1]["id"]]
