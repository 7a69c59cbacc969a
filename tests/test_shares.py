"""Share links: made, listed and revoked by the owner (page and API); the public page."""

import re

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chat.deltas import clean_text
from chat.models import Conversation, Message, ShareLink
from tests.asgi_client import AsgiClient
from tests.test_xss import Elements, executable_parts
from tests.xss_corpus import PAYLOADS

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


def said(conversation: Conversation, parent: Message | None, role: str, content: str) -> Message:
    return Message.objects.create(
        conversation=conversation, parent=parent, role=role, content=content, finish_reason="stop"
    )


def branched(owner: User) -> tuple[Conversation, dict[str, Message]]:
    """Two branches after the first exchange; the older one is on screen.

    first → **bold** answer → second question → second answer   (current)
                            → edited question → edited answer   (newer, not on screen)
    """
    conversation = Conversation.objects.create(owner=owner, title="Tides", model="demo")
    first = said(conversation, None, "user", "First question")
    answer = said(conversation, first, "assistant", "A **bold** answer")
    second = said(conversation, answer, "user", "Second question")
    second_answer = said(conversation, second, "assistant", "Second answer")
    edited = said(conversation, answer, "user", "Edited question")
    edited_answer = said(conversation, edited, "assistant", "Edited answer")
    conversation.current_leaf = second_answer
    conversation.save(update_fields=["current_leaf"])
    return conversation, {
        "first": first,
        "answer": answer,
        "second": second,
        "second_answer": second_answer,
        "edited": edited,
        "edited_answer": edited_answer,
    }


@pytest.fixture
async def tree(alice) -> tuple[Conversation, dict[str, Message]]:
    return await sync_to_async(branched)(alice)


async def shared_page(token_url: str) -> tuple[int, dict[str, str], str]:
    response = await AsgiClient().get(token_url)
    return response.status, response.headers, (await response.body()).decode()


def path_of(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


async def test_the_api_makes_lists_and_revokes_links(api, tree):
    conversation, messages = tree

    made = await api.post(f"/api/conversations/{conversation.pk}/shares/")
    assert made.status == 201
    link = await made.json()
    stored = await ShareLink.objects.aget(pk=link["id"])
    assert link == {
        "id": str(stored.pk),
        "conversation": str(conversation.pk),
        "leaf": str(messages["second_answer"].pk),
        "url": f"http://testserver/s/{stored.token}/",
        "created_at": stored.created_at.isoformat(),
    }
    assert len(stored.token) == 43  # secrets.token_urlsafe(32)
    listed = await (await api.get(f"/api/conversations/{conversation.pk}/shares/")).json()
    assert listed == {"shares": [link]}
    assert (await shared_page(path_of(link["url"])))[0] == 200

    revoked = await api.delete(f"/api/shares/{link['id']}/")

    assert revoked.status == 204
    assert (await shared_page(path_of(link["url"])))[0] == 404  # at once
    listed = await (await api.get(f"/api/conversations/{conversation.pk}/shares/")).json()
    assert listed == {"shares": []}
    assert (await api.delete(f"/api/shares/{link['id']}/")).status == 404


async def test_each_link_has_its_own_token(api, tree):
    conversation, _ = tree
    url = f"/api/conversations/{conversation.pk}/shares/"

    first = await (await api.post(url)).json()
    second = await (await api.post(url)).json()

    assert first["url"] != second["url"]
    await api.delete(f"/api/shares/{first['id']}/")
    assert (await shared_page(path_of(second["url"])))[0] == 200


async def test_the_page_makes_lists_and_revokes_links(api, tree):
    conversation, _ = tree
    page = await api.get(conversation.get_absolute_url())
    assert f'href="/c/{conversation.pk}/shares/"' in (await page.body()).decode()  # Share…

    made = await api.post_form(f"/c/{conversation.pk}/shares/", {})

    link = await ShareLink.objects.aget(conversation=conversation)
    # Back to the list, the new link marked: a reload makes no second link.
    assert (made.status, made.headers["location"]) == (
        302,
        f"/c/{conversation.pk}/shares/?made={link.pk}",
    )
    shown = await api.get(made.headers["location"])
    html = (await shown.body()).decode()
    assert f'value="http://testserver/s/{link.token}/"' in html
    assert f'data-copy-text="http://testserver/s/{link.token}/"' in html
    assert "A new link is ready" in html
    assert shown.headers["cache-control"].startswith("max-age=0")
    listed = (await (await api.get(f"/c/{conversation.pk}/shares/")).body()).decode()
    assert link.token in listed and "A new link is ready" not in listed

    revoked = await api.post_form(f"/shares/{link.pk}/revoke", {})

    assert (revoked.status, revoked.headers["location"]) == (302, f"/c/{conversation.pk}/shares/")
    assert (await shared_page(f"/s/{link.token}/"))[0] == 404
    listed = await api.get(f"/c/{conversation.pk}/shares/")
    assert link.token not in (await listed.body()).decode()


async def test_the_public_page_shows_the_branch_up_to_the_leaf_and_nothing_else(api, tree):
    conversation, messages = tree
    link = await (await api.post(f"/api/conversations/{conversation.pk}/shares/")).json()
    # Said after sharing, on the same branch: not part of the link.
    later = await sync_to_async(said)(conversation, messages["second_answer"], "user", "Later")
    await sync_to_async(said)(conversation, later, "assistant", "Later answer")

    status, _, html = await shared_page(path_of(link["url"]))

    assert status == 200
    shown = re.findall(r'<div class="(?:msg__bubble|prose)">(.*?)</div>', html, re.S)
    assert [text.strip() for text in shown] == [
        "First question",
        "<p>A <strong>bold</strong> answer</p>",
        "Second question",
        "<p>Second answer</p>",
    ]
    for hidden in ("Edited", "Later"):
        assert hidden not in html
    for absent in ("<form", "<textarea", "data-feedback", "data-regenerate", "js/chat/main.js"):
        assert absent not in html
    assert "Tides" in html


async def test_the_public_page_is_not_indexed_not_cached_and_under_the_csp(api, tree):
    conversation, _ = tree
    link = await (await api.post(f"/api/conversations/{conversation.pk}/shares/")).json()

    status, headers, html = await shared_page(path_of(link["url"]))

    assert status == 200
    assert '<meta name="robots" content="noindex, nofollow">' in html
    assert headers["x-robots-tag"] == "noindex, nofollow"
    assert headers["referrer-policy"] == "no-referrer"
    assert "no-store" in headers["cache-control"] and "private" in headers["cache-control"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "set-cookie" not in headers  # a visitor gets no cookie


@pytest.mark.parametrize(
    "token",
    ["x" * 43, "a", "%00", "-_" * 30, "é" * 43],
)
async def test_an_unknown_token_is_a_404_with_the_same_headers(token, alice):
    status, headers, html = await shared_page(f"/s/{token}/")

    assert status == 404
    assert headers["x-robots-tag"] == "noindex, nofollow"
    assert "no-store" in headers["cache-control"]
    assert "This link does not work" in html


async def test_a_revoked_link_looks_like_an_unknown_one(api, tree):
    conversation, _ = tree
    link = await (await api.post(f"/api/conversations/{conversation.pk}/shares/")).json()
    await api.delete(f"/api/shares/{link['id']}/")

    revoked = await shared_page(path_of(link["url"]))
    unknown = await shared_page("/s/" + "x" * 43 + "/")

    assert revoked[0] == unknown[0] == 404
    assert revoked[2] == unknown[2]


async def test_a_conversation_with_nothing_said_cannot_be_shared(api, alice):
    conversation = await Conversation.objects.acreate(owner=alice, model="demo")

    refused = await api.post(f"/api/conversations/{conversation.pk}/shares/")
    page = await api.post_form(f"/c/{conversation.pk}/shares/", {})

    assert refused.status == 409
    assert (await refused.json())["error"]["code"] == "nothing_to_share"
    assert page.status == 409
    assert "no message to share" in (await page.body()).decode()
    assert not await ShareLink.objects.aexists()


async def test_an_answer_still_streaming_cannot_be_shared_until_it_ends(api, tree):
    conversation, messages = tree
    answer = messages["second_answer"]
    answer.status = Message.Status.STREAMING
    await answer.asave(update_fields=["status"])

    refused = await api.post(f"/api/conversations/{conversation.pk}/shares/")

    assert refused.status == 409
    assert (await refused.json())["error"]["code"] == "answer_streaming"
    assert not await ShareLink.objects.aexists()


async def test_a_later_continued_answer_shows_as_stored(api, tree):
    conversation, messages = tree
    link = await (await api.post(f"/api/conversations/{conversation.pk}/shares/")).json()
    answer = messages["second_answer"]
    answer.status = Message.Status.STREAMING  # continued after sharing
    answer.content = "Second answer, and more"
    await answer.asave(update_fields=["status", "content"])

    status, _, html = await shared_page(path_of(link["url"]))

    assert status == 200
    assert "Second answer, and more" in html
    assert "Still being written" in html


async def test_another_user_can_neither_make_list_nor_revoke(api, bob_api, tree):
    conversation, _ = tree
    link = await (await api.post(f"/api/conversations/{conversation.pk}/shares/")).json()

    for response in [
        await bob_api.post(f"/api/conversations/{conversation.pk}/shares/"),
        await bob_api.get(f"/api/conversations/{conversation.pk}/shares/"),
        await bob_api.delete(f"/api/shares/{link['id']}/"),
        await bob_api.get(f"/c/{conversation.pk}/shares/"),
        await bob_api.post_form(f"/c/{conversation.pk}/shares/", {}),
        await bob_api.post_form(f"/shares/{link['id']}/revoke", {}),
    ]:
        assert response.status == 404
    assert await ShareLink.objects.active().acount() == 1


async def test_the_xss_corpus_is_inert_text_on_a_shared_page(api, alice):
    hostile = "<img src=x onerror=alert(1)>"

    def conversation() -> Conversation:
        found = Conversation.objects.create(owner=alice, title=hostile, model="demo")
        # As the database keeps it: no store takes a NUL, so the app drops them first.
        corpus = clean_text("\n\n".join(PAYLOADS))
        question = said(found, None, "user", corpus)
        found.current_leaf = said(found, question, "assistant", corpus)
        found.save(update_fields=["current_leaf"])
        return found

    found = await sync_to_async(conversation)()
    link = await (await api.post(f"/api/conversations/{found.pk}/shares/")).json()

    status, _, html = await shared_page(path_of(link["url"]))

    assert status == 200
    transcript = html[html.index('<div class="transcript"') : html.index("<footer")]
    assert executable_parts(transcript) == []
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in transcript  # the question, as text
    scripts = [attrs.get("src", "") for tag, attrs in Elements(html).found if tag == "script"]
    assert scripts and all(src.startswith("/static/") for src in scripts)
    assert "<title>&lt;img src=x onerror=alert(1)&gt; · Shared chat</title>" in html


def test_the_admin_lists_links_and_revokes_them_but_deletes_none_in_bulk(client, alice):
    staff = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(staff)
    conversation, messages = branched(alice)
    link = ShareLink.objects.create(
        conversation=conversation, leaf=messages["second_answer"], token="t" * 43
    )

    listed = client.get("/admin/chat/sharelink/")
    revoked = client.post(
        "/admin/chat/sharelink/", {"action": "revoke", "_selected_action": [str(link.pk)]}
    )

    html = listed.content.decode()
    assert "Tides" in html and "alice" in html
    assert 'value="revoke"' in html and 'value="delete_selected"' not in html
    assert revoked.status_code == 302
    link.refresh_from_db()
    assert link.revoked_at is not None
