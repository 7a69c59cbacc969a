"""
Share links, feedback and keyboard shortcuts in a real browser: a link made from the
menu and read in another (logged-out) browser, with the XSS corpus inert there, then
revoked; thumbs and a comment under an answer; the ? dialog and the shortcuts.
"""

import pytest
from django.contrib.auth.models import User

from chat.deltas import clean_text
from chat.models import Conversation, Feedback, Message, ShareLink
from tests.e2e.test_browser import WAIT_MS
from tests.e2e.test_xss import WATCH, assert_nothing_ran
from tests.xss_corpus import PAYLOADS

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLIPBOARD = ["clipboard-read", "clipboard-write"]
ANSWER = "Here is **the** answer.\n\n```python\nprint(42)\n```\n"


def exchange(owner: User, title: str, question: str, answer: str) -> tuple[Conversation, Message]:
    conversation = Conversation.objects.create(owner=owner, title=title, model="gpt-test")
    asked = Message.objects.create(conversation=conversation, role="user", content=question)
    answered = Message.objects.create(
        conversation=conversation, parent=asked, role="assistant", content=answer
    )
    conversation.current_leaf = answered
    conversation.save(update_fields=["current_leaf"])
    return conversation, answered


def test_a_link_is_made_from_the_menu_read_logged_out_and_revoked(
    open_session, alice_user, upstream_fake
):
    hostile = clean_text("\n\n".join(PAYLOADS))  # as stored: no database takes a NUL
    conversation, _ = exchange(alice_user, "<img src=x onerror=alert(1)>", hostile, hostile)
    owner = open_session(alice_user, permissions=CLIPBOARD)
    page = owner.page
    page.add_init_script(WATCH)
    owner.goto(conversation.get_absolute_url())

    page.get_by_label("Chat actions").click()
    page.get_by_role("link", name="Share…").click()
    page.get_by_role("button", name="Create a link").click()
    url = page.locator(".shares__url input").input_value()
    page.get_by_role("button", name="Copy link").click()
    page.locator(".shares [data-copy-text].is-copied").wait_for(timeout=WAIT_MS)
    assert page.evaluate("navigator.clipboard.readText()") == url
    assert url == owner.base + ShareLink.objects.get().get_absolute_url()

    visitor = open_session()  # no cookie: a private window
    visitor.page.add_init_script(WATCH)
    response = visitor.page.goto(url)
    assert response.status == 200
    assert response.headers["x-robots-tag"] == "noindex, nofollow"
    assert visitor.page.locator('meta[name="robots"]').get_attribute("content") == (
        "noindex, nofollow"
    )
    assert "<script>window.__xss=1</script>" in visitor.page.locator(".msg__bubble").inner_text()
    assert "<script>window.__xss=1</script>" in visitor.page.locator(".prose").inner_text()
    assert visitor.page.locator("form, textarea, [data-feedback]").count() == 0
    assert_nothing_ran(visitor)
    assert_nothing_ran(owner)

    page.get_by_role("button", name="Revoke").click()
    page.get_by_text("No links: nobody else can read this chat.").wait_for(timeout=WAIT_MS)
    gone = visitor.page.reload()
    assert gone.status == 404
    assert "This link does not work" in visitor.page.content()


def test_thumbs_and_a_comment_under_an_answer(open_session, alice_user, upstream_fake):
    conversation, answer = exchange(alice_user, "Tides", "Why tides?", "The moon.")
    session = open_session(alice_user)
    page = session.page
    session.goto(conversation.get_absolute_url())
    down = page.get_by_role("button", name="Bad answer")
    assert down.get_attribute("aria-pressed") == "false"

    down.click()
    page.get_by_text("Thanks for the feedback.").wait_for(timeout=WAIT_MS)
    assert page.get_by_role("button", name="Bad answer").get_attribute("aria-pressed") == "true"
    page.get_by_label("What was wrong with it?").fill("Too short.")
    page.get_by_role("button", name="Send", exact=True).click()
    page.get_by_text("Edit comment").wait_for(timeout=WAIT_MS)
    given = Feedback.objects.get(message=answer)
    assert (given.rating, given.comment) == ("down", "Too short.")

    page.get_by_role("button", name="Bad answer").click()  # the same thumb: taken back
    page.locator('[data-feedback="down"][aria-pressed="false"]').wait_for(timeout=WAIT_MS)
    assert page.get_by_text("Edit comment").count() == 0
    assert not Feedback.objects.exists()
    assert session.csp_errors == []


def test_the_shortcuts_dialog_focus_and_copy(open_session, alice_user, upstream_fake):
    conversation, _ = exchange(alice_user, "Tides", "Show code", ANSWER)
    session = open_session(alice_user, permissions=CLIPBOARD)
    page = session.page
    session.goto(conversation.get_absolute_url())
    dialog = page.locator("#shortcuts")
    page.locator(".msg--assistant .prose [data-copy-code]").wait_for(timeout=WAIT_MS)

    page.keyboard.press("?")
    assert dialog.is_visible()
    assert "Copy the last answer" in dialog.inner_text()
    assert page.evaluate("document.activeElement.hasAttribute('data-shortcuts-close')")
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    page.keyboard.press("Control+/")
    assert dialog.is_visible()
    page.get_by_role("button", name="Close").click()
    assert not dialog.is_visible()
    page.get_by_role("button", name="Keyboard shortcuts").click()
    assert dialog.is_visible()
    page.keyboard.press("Escape")
    # Closed, the focus goes back to the button that opened it.
    page.wait_for_function("document.activeElement.matches('[data-shortcuts-open]')")
    page.get_by_role("button", name="Keyboard shortcuts").click()
    # The dialog's "close" event comes a task after it closes: focus moved before then (by
    # a Shift+Escape pressed at once) stays where it went.
    page.evaluate(
        """() => {
            document.querySelector("[data-shortcuts]").close();
            document.getElementById("composer-input").focus();
            return new Promise((done) => setTimeout(done));
        }"""
    )
    assert page.evaluate("document.activeElement.id") == "composer-input"
    page.keyboard.press("Shift+Escape")
    assert page.evaluate("document.activeElement.id") == "composer-input"
    page.keyboard.press("?")  # typing: a question mark, not the dialog
    assert not dialog.is_visible()
    assert page.get_by_label("Message", exact=True).input_value() == "?"

    page.keyboard.press("Control+Shift+C")
    page.locator(".msg--assistant [data-copy-answer].is-copied").wait_for(timeout=WAIT_MS)
    assert page.evaluate("navigator.clipboard.readText()") == ANSWER
    page.keyboard.press("Control+Shift+Semicolon")
    page.locator(".prose [data-copy-code].is-copied").wait_for(timeout=WAIT_MS)
    assert page.evaluate("navigator.clipboard.readText()").strip() == "print(42)"

    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(session.base + "/", timeout=WAIT_MS)
    assert session.csp_errors == []
