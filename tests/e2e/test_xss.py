"""
The XSS corpus (tests/xss_corpus.py) as a model's answer, in a real browser.

The fake model streams every payload in one answer; the page shows it as text while it
streams, swaps in the server's rendered blocks on the way and the rendered message at the
end, and shows it again after a reload. Nothing may run (no dialog, no window.__xss), no
element with an event handler or a script URL may ever enter the page, and the page's
Content-Security-Policy, which would block inline script anyway, must report nothing:
the payloads never get as far as needing it.
"""

import re
from pathlib import Path

import pytest

from tests.attachment_files import image
from tests.e2e.test_browser import WAIT_MS, send, titled, wait_finished
from tests.fakeopenai import Reply
from tests.xss_corpus import PAYLOADS

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MODULES = sorted(path.name for path in (Path(__file__).parents[2] / "static/js/chat").glob("*.js"))

ANSWER = "\n\n".join(PAYLOADS)
FIRST_PAYLOAD_AS_TEXT = "<script>window.__xss=1</script>"
HOSTILE_TITLE = "<img src=x onerror=alert(1)>"

# Installed before the page's own scripts. Every element that enters the page's body, at
# any moment, is checked (an attribute set later too); what is caught stays caught even
# if the element is gone by the end. CSP violations are recorded as they are reported.
WATCH = r"""
window.__caught = [];
const URL_ATTRIBUTES = ["href", "src", "srcset", "action", "formaction", "xlink:href", "data"];
const FORBIDDEN = "script, style, iframe, object, embed, form, svg, math, img, video, audio, "
  + "base, meta, link, input, textarea, template";
window.__hostile = (el) => {
  const attributes = [...el.attributes].filter((a) => /^on/i.test(a.name)
    || (URL_ATTRIBUTES.includes(a.name.toLowerCase())
        && /^(javascript|data|vbscript):/i.test(a.value.replace(/[\u0000-\u0020\u007f]/g, ""))));
  const forbidden = el.closest(".prose, .msg__stream") !== null && el.matches(FORBIDDEN);
  return attributes.length > 0 || forbidden;
};
const check = (node) => {
  if (node.nodeType !== Node.ELEMENT_NODE || !node.closest("body")) return;
  for (const el of [node, ...node.querySelectorAll("*")]) {
    if (window.__hostile(el)) window.__caught.push(el.outerHTML.slice(0, 200));
  }
};
new MutationObserver((records) => {
  for (const record of records) {
    if (record.type === "attributes") check(record.target);
    else record.addedNodes.forEach(check);
  }
}).observe(document, { subtree: true, childList: true, attributes: true });
document.addEventListener("securitypolicyviolation", (event) => {
  window.__caught.push(`CSP ${event.violatedDirective}: ${event.blockedURI}`);
});
"""


def directives(policy: str) -> dict[str, list[str]]:
    parts = (directive.split() for directive in policy.split(";") if directive.strip())
    return {name: values for name, *values in parts}


def hostile_elements(page) -> list[str]:
    return page.evaluate(
        "[...document.body.querySelectorAll('*')].filter(window.__hostile)"
        ".map((el) => el.outerHTML.slice(0, 200))"
    )


def assert_nothing_ran(session) -> None:
    page = session.page
    page.wait_for_timeout(300)  # time for a load error's handler to run, were there one
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("window.__caught") == []
    assert hostile_elements(page) == []
    assert session.dialogs == []
    assert session.csp_errors == []


def test_the_page_allows_only_its_own_scripts(open_session, alice_user, upstream_fake):
    session = open_session(alice_user)

    response = session.page.goto(session.base + "/")

    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    scripts = session.page.evaluate("[...document.scripts].map((script) => script.src)")
    assert scripts and all(src.startswith(session.base + "/static/") for src in scripts)


def test_the_page_runs_its_scripts_as_modules_under_the_policy(
    open_session, alice_user, upstream_fake
):
    session = open_session(alice_user)
    page = session.page
    page.add_init_script(WATCH)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    loaded: list[tuple[str, int]] = []
    page.on("response", lambda response: loaded.append((response.url, response.status)))

    session.goto("/")
    page.wait_for_load_state("load")

    kinds = page.evaluate("[...document.scripts].map((script) => [script.src, script.type])")
    assert [kind for src, kind in kinds if "/static/js/" in src] == ["module"]
    assert page.evaluate("document.documentElement.classList.contains('js')")  # main.js ran
    modules = sorted(
        url.rsplit("/", 1)[1]
        for url, status in loaded
        if "/static/js/chat/" in url and status == 200
    )
    assert modules == MODULES  # each module, once, from its import in another
    assert errors == []
    assert page.evaluate("window.__caught") == []
    assert session.csp_errors == []


def test_the_xss_corpus_streams_and_renders_as_inert_text(open_session, alice_user, upstream_fake):
    tokens = re.findall(r"\S+\s*|\s+", ANSWER)
    upstream_fake.reply_to("Be evil", Reply(tokens=tokens, token_delay=0.01))
    titled(upstream_fake, HOSTILE_TITLE)
    session = open_session(alice_user)
    page = session.page
    page.add_init_script(WATCH)
    session.goto("/")

    send(page, "Be evil")
    # While it streams: payloads already rendered as blocks, the open one shown as text.
    page.wait_for_selector(".msg--streaming [data-rendered] p", timeout=WAIT_MS)
    streaming = page.locator(".msg--streaming .msg__stream").inner_text()
    assert FIRST_PAYLOAD_AS_TEXT in streaming
    assert PAYLOADS[-1] not in streaming
    assert_nothing_ran(session)
    wait_finished(page, timeout=60_000)
    page.wait_for_selector(f".convs__link.is-current >> text={HOSTILE_TITLE}", timeout=5000)

    rendered = page.locator(".msg--complete .prose").inner_text()
    assert FIRST_PAYLOAD_AS_TEXT in rendered
    assert page.locator("#topbar-title").inner_text() == HOSTILE_TITLE
    assert_nothing_ran(session)

    page.reload()
    page.wait_for_selector(".msg--complete .prose")
    assert FIRST_PAYLOAD_AS_TEXT in page.locator(".msg--complete .prose").inner_text()
    assert_nothing_ran(session)


HOSTILE_NAME = "<img src=x onerror=alert(1)>"


def test_hostile_attachment_names_show_as_text(open_session, alice_user, upstream_fake):
    session = open_session(alice_user)
    page = session.page
    page.add_init_script(WATCH)
    session.goto("/")
    upload = page.get_by_label("Attach files")

    upload.set_input_files(
        [
            {"name": f"{HOSTILE_NAME}.png", "mimeType": "image/png", "buffer": image()},
            {"name": f"{HOSTILE_NAME}.txt", "mimeType": "text/plain", "buffer": b"<script>x"},
        ]
    )
    page.locator(".chip--done").nth(1).wait_for(timeout=WAIT_MS)
    names = page.locator(".chip__name").all_inner_texts()
    assert names == [f"{HOSTILE_NAME}.png", f"{HOSTILE_NAME}.txt"]
    assert_nothing_ran(session)
    send(page, "Names")
    wait_finished(page)

    assert page.locator(".msg--user .attachment__name").inner_text() == f"{HOSTILE_NAME}.txt"
    assert page.locator(".msg--user .attachments img").get_attribute("alt") == f"{HOSTILE_NAME}.png"
    assert_nothing_ran(session)
    page.reload()
    page.locator(".msg--user .attachments").wait_for()
    assert_nothing_ran(session)
