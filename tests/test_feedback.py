"""Feedback on answers: thumbs and a comment, on the page and the API; export and admin."""

import json
import re

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chat.models import Conversation, Feedback, Message
from tests.conftest import finished_exchange

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

HTMX = {"HX-Request": "true"}


@pytest.fixture
async def exchange(alice) -> tuple[Conversation, Message, Message]:
    """Alice's question and its finished answer."""
    conversation, answer, _ = await sync_to_async(finished_exchange)(alice)
    question = await conversation.messages.aget(role="user")
    return conversation, question, answer


def url(message: Message) -> str:
    return f"/api/messages/{message.pk}/feedback"


def pressed(html: str) -> dict[str, str]:
    """Each thumb's aria-pressed."""
    return dict(re.findall(r'data-feedback="(\w+)"\s+aria-pressed="(\w+)"', html))


async def put(api, message: Message, body: object):
    return await api.request(
        "PUT",
        url(message),
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )


async def stored(message: Message) -> tuple[str, str] | None:
    found = await Feedback.objects.filter(message=message).afirst()
    return (found.rating, found.comment) if found else None


async def test_the_api_sets_replaces_reads_and_clears_feedback(api, exchange):
    _, _, answer = exchange
    assert (await api.get(url(answer))).status == 404

    up = await put(api, answer, {"rating": "up"})
    assert (up.status, await up.json()) == (200, {"rating": "up", "comment": ""})
    down = await put(api, answer, {"rating": "down", "comment": "  Wrong tide table.  "})
    assert (await down.json()) == {"rating": "down", "comment": "Wrong tide table."}
    assert await Feedback.objects.acount() == 1
    read = await api.get(url(answer))
    assert (read.status, await read.json()) == (
        200,
        {"rating": "down", "comment": "Wrong tide table."},
    )

    cleared = await api.delete(url(answer))

    assert cleared.status == 204
    assert await stored(answer) is None
    assert (await api.delete(url(answer))).status == 204  # already none: still fine


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_field"),
        ({"rating": "meh"}, "invalid_field"),
        ({"rating": 1}, "invalid_field"),
        ({"rating": "up", "comment": 5}, "invalid_field"),
        ({"rating": "up", "comment": "x" * 2001}, "too_long"),
        ({"rating": "up", "comment": "a\x00b"}, "invalid_text"),
    ],
)
async def test_the_api_refuses_bad_feedback(api, exchange, body, code):
    _, _, answer = exchange

    refused = await put(api, answer, body)

    assert refused.status == 400
    assert (await refused.json())["error"]["code"] == code
    assert await stored(answer) is None


async def test_a_comment_of_2000_characters_is_kept_whole(api, exchange):
    _, _, answer = exchange

    response = await put(api, answer, {"rating": "up", "comment": "x" * 2000})

    assert response.status == 200
    assert await stored(answer) == ("up", "x" * 2000)


async def test_only_finished_answers_take_feedback(api, exchange):
    _, question, answer = exchange
    answer.status = Message.Status.STREAMING
    await answer.asave(update_fields=["status"])

    on_question = await put(api, question, {"rating": "up"})
    on_streaming = await put(api, answer, {"rating": "up"})
    page = await api.post_form(f"/m/{question.pk}/feedback", {"rating": "up"})

    assert on_question.status == 400
    assert (await on_question.json())["error"]["code"] == "not_an_answer"
    assert on_streaming.status == 409
    assert (await on_streaming.json())["error"]["code"] == "answer_streaming"
    assert page.status == 302  # back to the page, which says why
    assert not await Feedback.objects.aexists()


async def test_another_users_answer_is_not_found(bob_api, exchange):
    _, _, answer = exchange

    for response in [
        await bob_api.get(url(answer)),
        await put(bob_api, answer, {"rating": "down"}),
        await bob_api.delete(url(answer)),
        await bob_api.post_form(f"/m/{answer.pk}/feedback", {"rating": "down"}),
    ]:
        assert response.status == 404
    assert not await Feedback.objects.aexists()


async def test_a_thumb_on_the_page_toggles_and_the_other_one_replaces(api, exchange):
    conversation, _, answer = exchange
    page = f"/m/{answer.pk}/feedback"

    first = await api.post_form(page, {"rating": "up"})
    assert (first.status, first.headers["location"]) == (
        302,
        f"{conversation.get_absolute_url()}#msg-{answer.pk}",
    )
    assert await stored(answer) == ("up", "")
    await api.post_form(page, {"rating": "up", "comment": "Clear and short."})
    assert await stored(answer) == ("up", "Clear and short.")

    await api.post_form(page, {"rating": "down"})  # the other thumb: its own rating, no comment
    assert await stored(answer) == ("down", "")
    await api.post_form(page, {"rating": "down"})  # the same thumb again: taken back
    assert await stored(answer) is None


async def test_the_transcript_shows_the_thumbs_pressed_and_the_comment(api, exchange):
    conversation, question, answer = exchange
    await Feedback.objects.acreate(message=answer, rating="down", comment="Too <b>vague</b>")

    html = (await (await api.get(conversation.get_absolute_url())).body()).decode()

    assert html.count('data-feedback="up"') == 1  # the answer's, not the question's
    assert pressed(html) == {"up": "false", "down": "true"}
    assert "Too &lt;b&gt;vague&lt;/b&gt;</textarea>" in html
    assert f'id="feedback-{question.pk}"' not in html


async def test_with_htmx_only_the_widget_comes_back(api, exchange):
    _, _, answer = exchange
    page = f"/m/{answer.pk}/feedback"

    rated = await api.request(
        "POST",
        page,
        body=b"rating=up",
        headers={"Content-Type": "application/x-www-form-urlencoded", **HTMX},
    )
    html = (await rated.body()).decode()

    assert rated.status == 200
    assert html.strip().startswith(f'<div class="feedback" id="feedback-{answer.pk}">')
    assert pressed(html) == {"up": "true", "down": "false"}
    assert '<details class="feedback__more" open>' in html  # asks why
    assert "Thanks for the feedback." in html


async def test_with_htmx_a_comment_too_long_is_refused_in_the_widget(api, exchange):
    _, _, answer = exchange
    await Feedback.objects.acreate(message=answer, rating="up")

    refused = await api.request(
        "POST",
        f"/m/{answer.pk}/feedback",
        body=f"rating=up&comment={'x' * 2001}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", **HTMX},
    )

    assert refused.status == 422
    assert "at most 2000 characters" in (await refused.body()).decode()
    assert await stored(answer) == ("up", "")


async def test_the_json_export_and_the_api_include_the_feedback(api, exchange):
    conversation, _, answer = exchange
    await Feedback.objects.acreate(message=answer, rating="up", comment="Spot on.")

    exported = json.loads(await (await api.get(f"/c/{conversation.pk}/export.json")).body())
    listed = await (await api.get(f"/api/conversations/{conversation.pk}/")).json()

    for data in (exported, listed):
        question, given = data["messages"]
        assert "feedback" not in question
        assert given["feedback"] == {"rating": "up", "comment": "Spot on."}


def test_the_admin_lists_feedback_with_filters_and_search(client, alice):
    staff = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(staff)
    conversation, good, _ = finished_exchange(alice)
    other = Conversation.objects.create(owner=alice, model="gpt-other")
    bad = Message.objects.create(conversation=other, role="assistant", content="Nonsense.")
    Feedback.objects.create(message=good, rating="up", comment="Lovely answer")
    Feedback.objects.create(message=bad, rating="down", comment="Made things up")

    every = client.get("/admin/chat/feedback/").content.decode()
    down = client.get("/admin/chat/feedback/", {"rating": "down"}).content.decode()
    by_model = client.get(
        "/admin/chat/feedback/", {"message__conversation__model": "demo"}
    ).content.decode()
    searched = client.get("/admin/chat/feedback/", {"q": "made things"}).content.decode()
    transcript = client.get(f"/admin/chat/conversation/{conversation.pk}/change/")

    assert "Lovely answer" in every and "Made things up" in every
    assert "Made things up" in down and "Lovely answer" not in down
    assert "Lovely answer" in by_model and "Made things up" not in by_model
    assert "Made things up" in searched and "Lovely answer" not in searched
    assert "Good: Lovely answer" in transcript.content.decode()
