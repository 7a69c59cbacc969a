"""
Versions and Continue in a real browser: edit an early question and flip between both
branches, regenerate and flip between answers, continue a cut-off answer in place.
"""

import pytest

from chat.turns import CONTINUE_PROMPT
from tests.e2e.test_browser import WAIT_MS, answer_text, send, titled, wait_count, wait_finished
from tests.fakeopenai import Reply

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def bubbles(page) -> list[str]:
    return [text.strip() for text in page.locator(".msg__bubble, .msg .prose").all_inner_texts()]


def test_editing_an_early_question_and_flipping_between_both_branches(
    open_session, alice_user, upstream_fake
):
    titled(upstream_fake, "Numbers")
    session = open_session(alice_user)
    page = session.page
    session.goto("/")
    send(page, "one")
    wait_finished(page)
    send(page, "two")
    wait_count(page.locator(".msg--complete"), 2)

    first = page.locator(".msg--user").first
    first.locator(".msg__edit summary").click()
    first.get_by_label("Edit your message").fill("uno")
    first.get_by_role("button", name="Save & send").click()
    page.wait_for_selector(".msg--complete >> text=Echo: uno", timeout=WAIT_MS)

    assert bubbles(page) == ["uno", "Echo: uno"]
    assert page.locator(".msg--user [data-versions]").inner_text() == "2/2"
    session.shot("versions")

    page.locator(".msg--user").first.get_by_role("button", name="Previous version").click()
    page.wait_for_selector(".msg__bubble >> text=two", timeout=WAIT_MS)
    assert bubbles(page) == ["one", "Echo: one", "two", "Echo: two"]
    assert page.locator(".msg--user [data-versions]").first.inner_text() == "1/2"

    page.locator(".msg--user").first.get_by_role("button", name="Next version").click()
    page.wait_for_selector(".msg__bubble >> text=uno", timeout=WAIT_MS)
    assert bubbles(page) == ["uno", "Echo: uno"]

    page.reload()
    assert bubbles(page) == ["uno", "Echo: uno"]
    assert session.csp_errors == []


def test_regenerating_keeps_the_old_answer_a_click_away(open_session, alice_user, upstream_fake):
    answers = iter(["First answer.", "Second answer."])
    upstream_fake.default = lambda prompt: Reply(tokens=[next(answers)])
    titled(upstream_fake, "Greetings")
    session = open_session(alice_user)
    page = session.page
    session.goto("/")
    send(page, "Say something")
    wait_finished(page)

    page.get_by_role("button", name="Regenerate").click()
    page.wait_for_selector(".msg--complete >> text=Second answer.", timeout=WAIT_MS)
    assert page.locator(".msg--assistant [data-versions]").inner_text() == "2/2"

    page.get_by_role("button", name="Previous version").click()
    page.wait_for_selector(".msg--complete >> text=First answer.", timeout=WAIT_MS)
    assert page.locator(".msg--assistant [data-versions]").inner_text() == "1/2"
    assert page.locator(".msg").count() == 2


def test_continuing_a_cut_off_answer_streams_into_the_same_bubble(
    open_session, alice_user, upstream_fake
):
    titled(upstream_fake, "Story")
    upstream_fake.reply_to(
        "Tell me a story", Reply(tokens=["Once ", "upon ", "a"], finish_reason="length")
    )
    upstream_fake.reply_to(
        CONTINUE_PROMPT, Reply(tokens=[" time", " there ", "was ", "an end."], token_delay=0.05)
    )
    session = open_session(alice_user)
    page = session.page
    session.goto("/")
    send(page, "Tell me a story")
    wait_finished(page)
    assert page.get_by_text("The answer was cut off at the length limit.").is_visible()

    page.get_by_role("button", name="Continue").click()
    page.wait_for_selector(".msg--streaming", timeout=WAIT_MS)
    wait_finished(page)

    assert answer_text(page) == "Once upon a time there was an end."
    assert page.locator(".msg--assistant").count() == 1
    assert page.get_by_role("button", name="Continue").count() == 0
    assert session.csp_errors == []
