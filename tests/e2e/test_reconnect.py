"""
Coming back to the page reopens only the streams that died (static/js/chat/reconnect.js).

The page's EventSource is wrapped before its scripts run, so the tests see every stream
the page opens; the page's visibility is the tests' to set. The server's heartbeat is
15 s; the tests tell the page a shorter one (data-sse-heartbeat-ms), so that "silent for
2.5 heartbeats" and "away for as long" take a fraction of a second.
"""

import time

import pytest
from django.contrib.auth.models import User

from tests.e2e.test_browser import WAIT_MS, send, wait_count, wait_finished, words
from tests.fakeopenai import Reply

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Every EventSource the page makes, and a visibility the test sets (hidden, or visible).
STREAMS_AND_VISIBILITY = """
window.__sources = [];
window.EventSource = class extends window.EventSource {
  constructor(...args) {
    super(...args);
    window.__sources.push(this);
  }
};
let visibility = "visible";
const property = (get) => ({ configurable: true, get });
Object.defineProperty(document, "visibilityState", property(() => visibility));
Object.defineProperty(document, "hidden", property(() => visibility === "hidden"));
window.__setVisibility = (state) => {
  visibility = state;
  document.dispatchEvent(new Event("visibilitychange"));
};
"""
OPEN = 1  # EventSource.OPEN


def asking(open_session, user: User, prompt: str):
    """A page whose streams and visibility the test holds, where the user has just asked."""
    session = open_session(user)
    session.page.add_init_script(STREAMS_AND_VISIBILITY)
    session.goto("/")
    send(session.page, prompt)
    return session


def opened(page) -> list[dict]:
    """The page's streams, oldest first: their URL's path and query, and readyState."""
    return page.evaluate(
        "window.__sources.map((s) => ({url: new URL(s.url).pathname + new URL(s.url).search,"
        " state: s.readyState}))"
    )


def wait_streams(page, check, timeout: float = WAIT_MS / 1000) -> list[dict]:
    """Poll the page's streams until check(streams) holds (wait_for_function needs eval)."""
    deadline = time.monotonic() + timeout
    while not check(streams := opened(page)):
        assert time.monotonic() < deadline, f"the page's streams: {streams}"
        time.sleep(0.05)
    return streams


def away_for(page, seconds: float) -> None:
    page.evaluate("window.__setVisibility('hidden')")
    page.wait_for_timeout(seconds * 1000)
    page.evaluate("window.__setVisibility('visible')")


def heartbeat_ms(page, ms: int) -> None:
    page.evaluate(f"document.querySelector('.shell').dataset.sseHeartbeatMs = '{ms}'")


def texts(page) -> list[list[str]]:
    return [bubble.inner_text().split() for bubble in page.locator(".msg--assistant .prose").all()]


def test_coming_back_reopens_the_dead_stream_and_leaves_the_live_one(
    open_session, alice_user, upstream_fake
):
    upstream_fake.reply_to("First", Reply(tokens=words(200, "a"), token_delay=0.05))
    upstream_fake.reply_to("Second", Reply(tokens=words(200, "b"), token_delay=0.05))
    session = asking(open_session, alice_user, "First")
    page = session.page
    page.wait_for_selector(".msg--streaming >> text=a3", timeout=WAIT_MS)
    # A second answer, in another chat (one chat streams one answer at a time), is shown
    # on this page as well: the bubble the server renders for it, wired like any new one.
    other = session.context.new_page()
    other.goto(session.base + "/")
    send(other, "Second")
    other.wait_for_url("**/c/*/")
    second_url = other.locator(".msg--streaming").get_attribute("data-message-url")
    other.close()
    page.evaluate(
        """async (url) => {
          const html = await (await fetch(url)).text();
          document.getElementById("transcript").insertAdjacentHTML("beforeend", html);
          document.dispatchEvent(new CustomEvent("htmx:after:swap"));
        }""",
        second_url,
    )
    first, second = wait_streams(page, lambda s: len(s) == 2 and s[1]["state"] == OPEN)
    assert first["url"] != second["url"]

    # The first stream's connection dies; the second keeps talking. A long absence:
    heartbeat_ms(page, 400)  # silent for 1 s: dead
    page.evaluate("window.__sources[0].close()")
    away_for(page, 1.5)

    streams = wait_streams(page, lambda s: len(s) == 3 and s[2]["state"] == OPEN)
    assert streams[2]["url"].startswith(first["url"].split("?")[0])
    assert "last_event_id=" in streams[2]["url"]  # reopened after its last event
    assert [s["state"] for s in streams[1:]] == [OPEN, OPEN]  # the live one untouched
    wait_count(page.locator(".msg--streaming"), 0)
    assert len(opened(page)) == 3
    assert texts(page) == [[f"a{n}" for n in range(200)], [f"b{n}" for n in range(200)]]
    assert session.csp_errors == []


def test_a_quiet_stream_is_reopened_after_a_long_absence_not_a_glance_away(
    open_session, alice_user, upstream_fake
):
    # The model thinks for seconds before its first word: the stream is open and silent
    # (the server's pings are comments, which EventSource does not show).
    upstream_fake.reply_to("Think", Reply(tokens=["Thought ", "it ", "over."], first_token_delay=5))
    session = asking(open_session, alice_user, "Think")
    page = session.page
    page.wait_for_url("**/c/*/")
    wait_streams(page, lambda s: len(s) == 1 and s[0]["state"] == OPEN)
    heartbeat_ms(page, 200)  # silent for 0.5 s: maybe dead
    page.wait_for_timeout(700)

    away_for(page, 0.05)  # a glance at another tab: the quiet stream is left alone
    page.wait_for_timeout(300)
    assert [s["state"] for s in opened(page)] == [OPEN]

    away_for(page, 0.8)  # long enough for the connection to have died unnoticed
    streams = wait_streams(page, lambda s: len(s) == 2 and s[1]["state"] == OPEN)
    assert streams[1]["url"] == streams[0]["url"]  # no event yet: from the start again
    assert streams[0]["state"] == 2  # the old one closed (EventSource.CLOSED)
    wait_finished(page)
    assert texts(page) == [["Thought", "it", "over."]]
    assert session.csp_errors == []
