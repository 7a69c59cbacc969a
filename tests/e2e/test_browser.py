"""
The chat in a real browser: what a new user does, from signing up to deleting a chat.

Each test drives Chromium against the app under daphne, with the fake OpenAI server
answering. Screenshots of the main screens land in artifacts/.
"""

import re
import time

import pytest
from django.contrib.auth.models import User

from chat.models import Conversation, Message
from tests.conftest import add_message
from tests.fakeopenai import Reply

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WAIT_MS = 15_000
XSS = "<script>alert(1)</script> and <img src=x onerror=alert(1)> and [x](javascript:alert(1))"


def words(count: int, prefix: str = "w") -> list[str]:
    return [f"{prefix}{n} " for n in range(count)]


def titled(fake, title: str) -> None:
    """The model's answer when the app asks it for a conversation title."""
    fake.reply_to("Title?", Reply(tokens=[title]))


def send(page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def answer_text(page) -> str:
    """The last answer's text: the stream, or the rendered Markdown once finished."""
    bubble = page.locator(".msg--assistant").last
    return bubble.locator(".msg__stream, .prose").first.inner_text()


def wait_finished(page, timeout: float = WAIT_MS) -> None:
    # Locators, not wait_for_function: the page's CSP forbids eval, which that uses.
    page.wait_for_selector(".msg--assistant", timeout=timeout)
    page.locator(".msg--streaming").wait_for(state="detached", timeout=timeout)


def wait_count(locator, count: int, timeout: float = WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while locator.count() != count:
        assert time.monotonic() < deadline, f"{locator} counts {locator.count()}, not {count}"
        time.sleep(0.05)


def make_chat(owner: User, title: str, *exchange: str) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title, model="gpt-test")
    for n, content in enumerate(exchange):
        role = "user" if n % 2 == 0 else "assistant"
        add_message(conversation, role=role, content=content)
    return conversation


def test_a_new_user_signs_up_logs_out_and_logs_in(open_session, upstream_fake):
    session = open_session()
    page = session.page

    session.goto("/accounts/signup/")
    session.shot("signup")
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Password", exact=True).fill("a long pass phrase 42")
    page.get_by_label("Password confirmation").fill("a long pass phrase 42")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_selector("text=What can I help with?")
    session.shot("home")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Password").fill("a long pass phrase 42")
    page.get_by_role("button", name="Log in").click()

    page.wait_for_selector("text=What can I help with?")
    assert page.locator(".sidebar__user").inner_text() == "newcomer"
    assert session.csp_errors == [] and session.dialogs == []


def test_tokens_arrive_as_they_are_written_and_blocks_render_on_the_way(
    open_session, alice_user, upstream_fake
):
    answer = (
        "# Tides\n\nThe moon pulls the sea. " + "".join(words(30)) + "\n\n"
        "```python\nprint('high tide')\n```\n\n" + "".join(words(30, "z"))
    )
    tokens = re.findall(r"\S+\s*|\s+", answer)
    upstream_fake.reply_to("Explain tides", Reply(tokens=tokens, token_delay=0.04))
    titled(upstream_fake, "Why the sea rises")
    session = open_session(alice_user, permissions=["clipboard-read", "clipboard-write"])
    page = session.page
    session.goto("/")

    send(page, "Explain tides")
    page.wait_for_url("**/c/*/")
    # Part of the answer is on screen while it is still streaming...
    page.wait_for_selector(".msg--streaming >> text=w5", timeout=WAIT_MS)
    partial = page.locator(".msg--streaming .msg__stream").inner_text()
    assert "w5" in partial and "z29" not in partial
    # ...its finished blocks already rendered (the heading), the open one as text.
    page.wait_for_selector(".msg--streaming [data-rendered] h1", timeout=WAIT_MS)
    assert page.locator("#composer .composer__send").is_disabled()
    session.shot("streaming")
    wait_finished(page)

    text = answer_text(page)
    assert text.count("w29") == 1 and text.count("z29") == 1
    assert page.locator(".msg--complete .prose h1").inner_text() == "Tides"
    assert page.locator(".msg--complete pre.highlight").count() == 1
    # Copy the code block, then the whole answer: a visible "Copied" each time.
    page.locator(".code-copy").click()
    page.wait_for_selector(".code-copy.is-copied >> text=Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "print('high tide')\n"
    page.get_by_role("button", name="Copy answer").click()
    page.wait_for_selector("[data-copy-answer].is-copied >> text=Copied")
    assert page.evaluate("navigator.clipboard.readText()") == answer
    # The title the model wrote shows in the sidebar without a reload.
    page.wait_for_selector(".convs__link.is-current >> text=Why the sea rises", timeout=5000)
    assert page.locator("#topbar-title").inner_text() == "Why the sea rises"
    session.shot("conversation")
    assert session.csp_errors == [] and session.dialogs == []


def test_escape_stops_the_answer_mid_way(open_session, alice_user, upstream_fake):
    upstream_fake.reply_to("Go on", Reply(tokens=words(200), token_delay=0.05))
    session = open_session(alice_user)
    page = session.page
    session.goto("/")

    send(page, "Go on")
    page.wait_for_selector(".msg--streaming >> text=w3", timeout=WAIT_MS)
    assert page.get_by_role("button", name="Stop").is_visible()
    page.keyboard.press("Escape")

    page.wait_for_selector(".msg--cancelled >> text=Stopped", timeout=WAIT_MS)
    assert "w199" not in answer_text(page)
    assert page.locator("#composer .composer__send").is_enabled()
    assert Message.objects.get(role="assistant").status == "cancelled"


def test_a_reload_mid_answer_resumes_it_without_losing_or_repeating_a_word(
    open_session, alice_user, upstream_fake
):
    upstream_fake.reply_to("Count", Reply(tokens=words(80), token_delay=0.04))
    session = open_session(alice_user)
    page = session.page
    session.goto("/")
    send(page, "Count")
    page.wait_for_selector(".msg--streaming >> text=w10", timeout=WAIT_MS)

    page.reload()
    page.wait_for_selector(".msg--streaming", timeout=WAIT_MS)
    wait_finished(page)

    assert answer_text(page).split() == [f"w{n}" for n in range(80)]


def test_a_finished_answer_renders_even_if_the_server_is_briefly_out_of_reach(
    open_session, alice_user, upstream_fake
):
    upstream_fake.reply_to("Hi", Reply(tokens=["**Bold** ", "move"], first_token_delay=1))
    session = open_session(alice_user)
    page = session.page
    session.goto("/")
    failures = []

    def fail_twice(route) -> None:
        if len(failures) < 2:
            failures.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    # The finished message's rendering (/m/<id>/) fails twice, then comes back.
    page.route(re.compile(r".*/m/[0-9a-f-]+/$"), fail_twice)
    send(page, "Hi")
    wait_finished(page)

    assert len(failures) == 2
    assert page.locator(".msg--complete .prose strong").inner_text() == "Bold"


def test_regenerate_edit_and_retry(open_session, alice_user, upstream_fake):
    answers = iter(["First answer.", "Second answer.", "Third answer."])
    upstream_fake.reply_to("Hello", Reply(tokens=["x"]))
    upstream_fake.default = lambda prompt: Reply(tokens=[next(answers)])
    titled(upstream_fake, "Greetings")
    session = open_session(alice_user)
    page = session.page
    session.goto("/")
    send(page, "Say something")
    wait_finished(page)
    assert "First answer." in answer_text(page)

    page.get_by_role("button", name="Regenerate").click()
    page.wait_for_selector(".msg--complete >> text=Second answer.", timeout=WAIT_MS)
    assert page.locator(".msg").count() == 2

    page.locator(".msg__edit summary").click()
    page.get_by_label("Edit your message").fill("Say it again")
    page.get_by_role("button", name="Save & send").click()
    page.wait_for_selector(".msg--complete >> text=Third answer.", timeout=WAIT_MS)
    assert page.locator(".msg--user .msg__bubble").inner_text() == "Say it again"
    assert page.locator(".msg").count() == 2

    # A failure shows in the bubble, with Retry; Retry answers again.
    upstream_fake.reply_to("Say it again", Reply(tokens=[], status=500))
    page.get_by_role("button", name="Regenerate").click()
    page.wait_for_selector(".msg--error .msg__error", timeout=WAIT_MS)
    session.shot("error")
    upstream_fake.reply_to("Say it again", Reply(tokens=["Better now."]))
    page.get_by_role("button", name="Retry").click()
    page.wait_for_selector(".msg--complete >> text=Better now.", timeout=WAIT_MS)
    assert page.locator(".msg").count() == 2
    assert session.csp_errors == []


def test_rename_inline_then_delete_with_confirmation(open_session, alice_user, upstream_fake):
    chat = make_chat(alice_user, "Old name", "q", "a")
    make_chat(alice_user, "Another chat", "q2", "a2")
    session = open_session(alice_user)
    page = session.page
    session.goto(chat.get_absolute_url())

    page.get_by_label("Options for “Old name”").click()
    box = page.get_by_role("textbox", name="Rename")
    assert page.evaluate("document.activeElement.name") == "title"  # focused for typing
    box.fill("Fresh name")
    box.press("Enter")
    page.wait_for_selector(".convs__link.is-current >> text=Fresh name")
    assert page.locator("#topbar-title").inner_text() == "Fresh name"
    assert page.url.endswith(chat.get_absolute_url())  # in place: no navigation
    chat.refresh_from_db()
    assert chat.title == "Fresh name"

    page.get_by_label("Options for “Fresh name”").click()
    page.get_by_role("link", name="Delete…").click()
    page.wait_for_selector("text=Delete “Fresh name”?")
    session.shot("delete-confirm")
    page.get_by_role("button", name="Delete", exact=True).click()

    page.wait_for_selector("text=Deleted “Fresh name”.")
    assert page.locator(".convs__link").all_inner_texts() == ["Another chat"]
    assert not Conversation.objects.filter(pk=chat.pk).exists()


def test_search_filters_the_list_as_one_types(open_session, alice_user, upstream_fake):
    make_chat(alice_user, "Tide tables", "when is high tide?", "at noon")
    make_chat(alice_user, "Recipes", "pancakes", "flour, eggs, milk")
    make_chat(alice_user, "Moon", "what pulls the sea?", "the MOON's gravity")
    session = open_session(alice_user)
    page = session.page
    session.goto("/")
    url = page.url

    page.get_by_label("Search conversations").fill("gravity")
    wait_count(page.locator(".convs__link"), 1)
    assert page.locator(".convs__link").all_inner_texts() == ["Moon"]
    page.get_by_label("Search conversations").fill("nothing like this")
    page.wait_for_selector("text=No chat matches")
    assert page.url == url
    page.get_by_label("Search conversations").fill("")
    wait_count(page.locator(".convs__link"), 3)


def test_a_hostile_answer_renders_as_inert_text(open_session, alice_user, upstream_fake):
    upstream_fake.reply_to("Be evil", Reply(tokens=XSS.split(" "), token_delay=0.02))
    session = open_session(alice_user)
    page = session.page
    session.goto("/")

    send(page, "Be evil")
    wait_finished(page)
    page.reload()
    page.wait_for_selector(".msg--complete")

    bubble = page.locator(".msg--assistant")
    assert "<script>alert(1)</script>" in answer_text(page)
    assert bubble.locator("script, img, [onerror]").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("img").count() == 0
    page.wait_for_timeout(300)
    assert session.dialogs == []


def test_a_phone_sized_screen(open_session, alice_user, upstream_fake):
    chat = make_chat(
        alice_user,
        "Packing for a hike",
        "What should I pack for a day hike?",
        "- Water, **two litres**\n- Snacks\n- A map\n\n```text\ncheck the weather\n```",
    )
    session = open_session(
        alice_user, viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True
    )
    page = session.page
    session.goto(chat.get_absolute_url())

    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert not page.locator("#sidebar").is_visible()
    assert page.get_by_label("Message", exact=True).is_visible()
    session.shot("phone")
    page.get_by_label("Show conversations").click()
    page.wait_for_selector("#sidebar .convs__link >> text=Packing for a hike")
    session.shot("phone-sidebar")
    page.keyboard.press("Escape")
    page.locator("body.sidebar-open").wait_for(state="detached")


def test_a_dark_desktop(open_session, alice_user, upstream_fake):
    chat = make_chat(
        alice_user,
        "Sorting in Python",
        "How do I sort a list of dicts by a key?",
        'Use `sorted` with a key function:\n\n```python\npeople.sort(key=lambda p: p["age"])\n'
        "```\n\n| way | stable |\n|---|---|\n| `sorted()` | yes |\n| `list.sort()` | yes |",
    )
    session = open_session(alice_user, color_scheme="dark", viewport={"width": 1440, "height": 900})
    session.goto(chat.get_absolute_url())

    background = session.page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(29, 30, 33)"
    session.shot("dark")


def test_a_long_answer_streams_without_long_tasks(open_session, alice_user, upstream_fake):
    paragraph = "".join(words(40, "p")).rstrip() + ".\n\n"
    listing = "".join(f"- item {n} of the list\n" for n in range(10)) + "\n"
    code = "```python\n" + "".join(f"x{n} = {n}\n" for n in range(10)) + "```\n\n"
    answer = (paragraph + listing + code) * 45
    tokens = re.findall(r"\S+\s*|\s+", answer)
    upstream_fake.reply_to("Long", Reply(tokens=tokens, token_delay=0.002))
    session = open_session(alice_user)
    page = session.page
    page.add_init_script(
        """
        window.__longTasks = [];
        new PerformanceObserver((list) => {
          for (const entry of list.getEntries()) {
            window.__longTasks.push({start: entry.startTime, duration: entry.duration});
          }
        }).observe({type: "longtask", buffered: true});
        """
    )
    session.goto("/")

    send(page, "Long")
    page.wait_for_selector(".msg--streaming [data-rendered] pre", timeout=WAIT_MS)
    started = page.evaluate("performance.now()")
    begun = time.monotonic()
    wait_finished(page, timeout=60_000)
    ended = page.evaluate("performance.now()")
    streamed_for = time.monotonic() - begun

    tasks = page.evaluate("window.__longTasks")
    during = [t["duration"] for t in tasks if started <= t["start"] < ended]
    worst = max(during, default=0)
    print(
        f"\nlong answer: {len(tokens)} tokens, {len(answer)} chars, streamed for "
        f"{streamed_for:.1f} s; long tasks while streaming: {len(during)}, worst {worst:.0f} ms; "
        f"all long tasks (ms before the end, duration): "
        f"{[(round(ended - t['start']), round(t['duration'])) for t in tasks]}"
    )
    assert answer_text(page).count("x9 = 9") == 45
    # The observer does see long tasks: a deliberate one is recorded.
    page.evaluate(
        "() => { setTimeout(() => { const t = performance.now();"
        " while (performance.now() - t < 120) {} }, 0); }"
    )
    page.wait_for_timeout(400)
    assert any(t["duration"] >= 100 for t in page.evaluate("window.__longTasks"))
    # The target is no task over 50 ms (printed above; 0 long tasks on an idle machine).
    # Re-rendering on every token fails this by far: the page then blocks most of the time,
    # in tasks of hundreds of ms growing with the answer. The margins absorb a loaded
    # 2-core runner (seen: 11 tasks, the worst 267 ms, 1 to 2 s of 14 s streaming).
    blocked = sum(during) / (streamed_for * 1000)
    assert worst <= 400 and blocked <= 0.2, (
        f"{len(during)} long tasks, worst {worst:.0f} ms, blocked {blocked:.0%} of the time"
    )
