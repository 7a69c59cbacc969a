"""
Attachments in a real browser: the paperclip (with its progress), drop and paste, a
refused file's reason, and the thumbnail in the transcript after sending.
"""

import time

import pytest

from tests.attachment_files import image
from tests.e2e.test_browser import WAIT_MS, answer_text, send, titled, wait_finished

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PNG = {"name": "photo.png", "mimeType": "image/png", "buffer": image(size=(64, 48))}

# A file made in the page, then dropped on it or pasted into it as a user would.
DISPATCH = """([kind, name, text]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([text], name, { type: "text/plain" }));
  const box = document.getElementById("composer-input");
  const event = kind === "drop"
    ? new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true })
    : new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true });
  box.dispatchEvent(event);
}"""


def attach_input(page):
    return page.get_by_label("Attach files")


def test_an_image_attached_with_the_button_is_sent_and_shown(
    open_session, alice_user, upstream_fake
):
    titled(upstream_fake, "Photo")
    session = open_session(alice_user)
    page = session.page
    session.goto("/")
    # The upload waits a moment, so the progress bar can be seen.
    page.route("**/api/attachments/", lambda route: (page.wait_for_timeout(400), route.continue_()))

    attach_input(page).set_input_files(PNG)

    page.locator(".chip--uploading .chip__progress").wait_for(timeout=WAIT_MS)
    page.locator(".chip--done .chip__thumb").wait_for(timeout=WAIT_MS)
    assert page.locator(".chip__name").inner_text() == "photo.png"
    session.shot("attachment-in-composer")
    send(page, "What is in this picture?")
    wait_finished(page)

    thumbnail = page.locator(".msg--user .attachments img")
    assert thumbnail.get_attribute("alt") == "photo.png"
    # A lazy image: it loads once laid out, a moment after the bubble is swapped in.
    deadline = time.monotonic() + WAIT_MS / 1000
    while not thumbnail.evaluate("(img) => img.complete && img.naturalWidth > 0"):
        assert time.monotonic() < deadline, "the thumbnail never loaded"
        page.wait_for_timeout(50)
    # The model saw it: the fake model echoes what it was sent.
    assert "[Attached image: photo.png (64×48)]" in answer_text(page)
    session.shot("attachment-sent")
    body = upstream_fake.requests[0]["body"]["messages"][-1]["content"]
    assert body[1]["image_url"]["url"].startswith("data:image/png;base64,")
    # The full image, from the thumbnail's link.
    full = page.request.get(session.base + page.locator(".attachment__image").get_attribute("href"))
    assert (full.status, full.headers["content-type"]) == (200, "image/png")
    assert session.csp_errors == []


def test_files_dropped_or_pasted_are_attached_and_can_be_removed(
    open_session, alice_user, upstream_fake
):
    session = open_session(alice_user)
    page = session.page
    session.goto("/")

    page.evaluate(DISPATCH, ["drop", "dropped.txt", "Dropped notes"])
    page.evaluate(DISPATCH, ["paste", "pasted.txt", "Pasted notes"])

    done = page.locator(".chip--done")
    done.nth(1).wait_for(timeout=WAIT_MS)
    assert done.locator(".chip__name").all_inner_texts() == ["dropped.txt", "pasted.txt"]
    page.get_by_role("button", name="Remove dropped.txt").click()
    page.locator(".chip", has_text="dropped.txt").wait_for(state="detached")
    send(page, "Read these")
    wait_finished(page)

    sent = page.locator(".msg--user .attachment__name").all_inner_texts()
    assert sent == ["pasted.txt"]
    assert "[Attached text file: pasted.txt]" in answer_text(page)
    assert session.csp_errors == []


def test_a_file_that_is_not_what_it_claims_shows_why(open_session, alice_user, upstream_fake):
    session = open_session(alice_user)
    page = session.page
    session.goto("/")

    attach_input(page).set_input_files(
        {"name": "fake.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\nnot an image"}
    )

    error = page.locator(".chip--error .chip__error")
    error.wait_for(timeout=WAIT_MS)
    assert "damaged" in error.inner_text()
    assert page.locator("input[name=attachments]").count() == 0
