"""The Django admin for conversations and generations."""

import pytest
from django.contrib.auth.models import User

from chat import api_keys
from chat.models import Conversation, Generation
from tests.conftest import add_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    admin = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return client


@pytest.fixture
def transcript(alice):
    conversation = Conversation.objects.create(owner=alice, title="Tides", model="gpt-test")
    add_message(conversation, role="user", content="Why tides?")
    answer = add_message(
        conversation,
        role="assistant",
        content="The moon pulls the oceans.",
        reasoning="Gravity, surely.",
        tool_calls=[
            {"id": "a", "name": "calculator", "arguments": {"expression": "6*7"}, "result": 42}
        ],
        prompt_tokens=12,
        completion_tokens=30,
    )
    Generation.objects.create(
        message=answer, conversation=conversation, model="gpt-test", request={"messages": []}
    )
    return conversation


def test_it_lists_conversations_with_owner_counts_and_tokens(staff_client, transcript):
    response = staff_client.get("/admin/chat/conversation/")

    assert response.status_code == 200
    row = response.context["cl"].result_list[0]
    assert (row.title, row.owner.username, row.message_total, row.token_total) == (
        "Tides",
        "alice",
        2,
        42,
    )


def test_token_totals_stay_exact_under_a_filter_or_search_on_messages(staff_client, transcript):
    # Both messages match, so a join for the filter or search would count each one twice.
    filtered = staff_client.get("/admin/chat/conversation/", {"messages__status": "complete"})
    searched = staff_client.get("/admin/chat/conversation/", {"q": "e"})

    for response in (filtered, searched):
        (row,) = response.context["cl"].result_list
        assert (row.message_total, row.token_total) == (2, 42)


def test_it_searches_titles_and_message_text(staff_client, transcript, bob):
    Conversation.objects.create(owner=bob, title="Other", model="gpt-test")

    by_text = staff_client.get("/admin/chat/conversation/", {"q": "moon pulls"})
    by_title = staff_client.get("/admin/chat/conversation/", {"q": "Tides"})

    assert [c.title for c in by_text.context["cl"].result_list] == ["Tides"]
    assert [c.title for c in by_title.context["cl"].result_list] == ["Tides"]


def test_it_filters_by_model_and_status(staff_client, transcript):
    hit = staff_client.get("/admin/chat/conversation/", {"model": "gpt-test"})
    miss = staff_client.get("/admin/chat/conversation/", {"messages__status": "streaming"})

    assert len(hit.context["cl"].result_list) == 1
    assert len(miss.context["cl"].result_list) == 0


def test_it_shows_the_transcript_read_only(staff_client, transcript):
    response = staff_client.get(f"/admin/chat/conversation/{transcript.pk}/change/")

    assert response.status_code == 200
    assert b"The moon pulls the oceans." in response.content
    assert b"Gravity, surely." in response.content
    assert b"calculator" in response.content and b"6*7" in response.content
    assert b"12 / 30" in response.content
    assert b'name="messages-0-content"' not in response.content


def test_it_lists_generations_by_status(staff_client, transcript):
    response = staff_client.get("/admin/chat/generation/", {"message__status": "complete"})

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1
    assert (
        staff_client.get(
            f"/admin/chat/generation/{transcript.generations.get().pk}/change/"
        ).status_code
        == 200
    )


def test_a_normal_user_cannot_open_the_admin(client, alice):
    client.force_login(alice)

    assert client.get("/admin/chat/conversation/").status_code == 302


def test_staff_see_api_keys_by_prefix_and_revoke_them(staff_client, alice):
    key, secret = api_keys.create(alice, "laptop")

    listing = staff_client.get("/admin/chat/apikey/")
    revoked = staff_client.post(
        "/admin/chat/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]}
    )

    assert b"laptop" in listing.content and key.prefix.encode() in listing.content
    assert secret.encode() not in listing.content
    assert revoked.status_code == 302
    assert api_keys.authenticate(secret) is None
