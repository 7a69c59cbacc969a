"""The renderer lets nothing executable through, for every payload of tests/xss_corpus.py.

The output is parsed as a browser would tokenise it (html.parser), never matched with
regular expressions, and each element and attribute is checked.
"""

from html.parser import HTMLParser

import pytest

from chat import render
from chat.render import render_markdown
from tests.xss_corpus import PAYLOADS

FORBIDDEN_TAGS = {
    "script", "style", "iframe", "frame", "object", "embed", "form", "input", "button",
    "svg", "math", "img", "video", "audio", "source", "base", "meta", "link", "template",
}  # fmt: skip
URL_ATTRIBUTES = {"href", "src", "srcset", "action", "formaction", "xlink:href", "data"}
DANGEROUS_SCHEMES = ("javascript:", "data:", "vbscript:")


class Elements(HTMLParser):
    """The elements the HTML makes, each as (tag, {attribute: value}), values unescaped."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {name: value or "" for name, value in attrs}))


def as_a_browser_reads_the_url(value: str) -> str:
    # URL parsing drops leading control characters and spaces, and tabs and newlines
    # anywhere: "java\tscript:" is "javascript:".
    return "".join(c for c in value if c > " " and c != "\x7f").lower()


def executable_parts(html: str) -> list[str]:
    """Describe everything in html that could run script, load something or restyle."""
    found = []
    for tag, attributes in Elements(html).found:
        if tag in FORBIDDEN_TAGS:
            found.append(f"a <{tag}> element")
        for name, value in attributes.items():
            if name.startswith("on") or name == "style":
                found.append(f"{name}= on <{tag}>")
            url = as_a_browser_reads_the_url(value)
            if name in URL_ATTRIBUTES and url.startswith(DANGEROUS_SCHEMES):
                found.append(f"{name}={value!r} on <{tag}>")
    return found


def test_the_checker_sees_what_it_looks_for():
    html = (
        '<script></script><p style="x" onclick="y"><a href=" JAVA\tSCRIPT:z">'
        '<svg></svg><img src="data:x">'
    )

    assert executable_parts(html) == [
        "a <script> element",
        "style= on <p>",
        "onclick= on <p>",
        "href=' JAVA\\tSCRIPT:z' on <a>",
        "a <svg> element",
        "a <img> element",
        "src='data:x' on <img>",
    ]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_hostile_answer_renders_as_inert_html(payload):
    html = render_markdown(payload)

    assert executable_parts(html) == [], html


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_sanitiser_alone_stops_it_when_markdown_lets_html_and_any_link_through(
    payload, monkeypatch
):
    # Defence in depth: markdown-it's own guards off, as a bug or a new syntax might.
    monkeypatch.setitem(render._markdown.options, "html", True)
    monkeypatch.setattr(render._markdown, "validateLink", lambda url: True)

    html = render_markdown(payload)

    assert executable_parts(html) == [], html


def test_the_corpus_as_one_answer_renders_as_inert_html():
    html = render_markdown("\n\n".join(PAYLOADS))

    assert executable_parts(html) == []
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html  # shown, as text
