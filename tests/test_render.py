"""Markdown of model answers to HTML: the formatting works, and nothing executable survives."""

from html.parser import HTMLParser

import pytest
from django.utils.safestring import SafeString

from chat import render
from chat.render import render_markdown


def test_it_returns_safe_html():
    assert isinstance(render_markdown("hi"), SafeString)
    assert render_markdown("hi") == "<p>hi</p>\n"


def test_it_renders_headings_emphasis_and_lists():
    html = render_markdown(
        "# One\n## Two\n\nSome **bold**, *italic* and ~~gone~~.\n\n- a\n- b\n\n3. c\n4. d\n"
    )

    assert "<h1>One</h1>" in html
    assert "<h2>Two</h2>" in html
    assert "<strong>bold</strong>, <em>italic</em> and <s>gone</s>." in html
    assert "<ul>\n<li>a</li>\n<li>b</li>\n</ul>" in html
    assert '<ol start="3">\n<li>c</li>\n<li>d</li>\n</ol>' in html


def test_it_renders_tables_with_alignment_as_classes():
    html = render_markdown("| Name | Count |\n|:-----|------:|\n| pears | 3 |\n")

    assert "<table>" in html
    assert '<th class="align-left">Name</th>' in html
    assert '<td class="align-right">3</td>' in html
    assert "style" not in html


def test_it_highlights_fenced_code_with_classes():
    html = render_markdown('```python\ndef f():\n    return "<b>"\n```\n')

    assert html.startswith('<pre class="highlight"><span class="code-lang">Python</span><code>')
    assert '<span class="k">def</span>' in html
    assert '<span class="nf">f</span>' in html
    assert "&lt;b&gt;" in html
    assert "<b>" not in html
    assert "style" not in html


def test_it_escapes_code_in_an_unknown_language_as_plain_text():
    html = render_markdown("```no-such-language\n<script>alert(1)</script>\n```\n")

    assert html == "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;\n</code></pre>\n"


def test_it_escapes_inline_code():
    assert render_markdown("`<img src=x>`") == "<p><code>&lt;img src=x&gt;</code></p>\n"


def test_it_keeps_safe_links_and_marks_them():
    html = render_markdown("[docs](https://example.com/a?b=1) and <mailto:x@example.com>")

    assert '<a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow">docs</a>' in html
    assert '<a href="mailto:x@example.com" rel="noopener noreferrer nofollow">' in html


def test_it_turns_images_into_links_and_loads_nothing():
    html = render_markdown("![a chart](https://example.com/chart.png)")

    assert "<img" not in html
    assert '<a href="https://example.com/chart.png"' in html
    assert ">a chart</a>" in html


XSS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<iframe src=https://evil.example></iframe>",
    "<iframe srcdoc='<script>alert(1)</script>'></iframe>",
    "<style>body{display:none}</style>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    "<object data=javascript:alert(1)></object>",
    "<embed src=javascript:alert(1)>",
    "<form action=javascript:alert(1)><button>x</button></form>",
    "<meta http-equiv=refresh content='0;url=javascript:alert(1)'>",
    "<base href=javascript:alert(1)//>",
    "<input autofocus onfocus=alert(1)>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](file:///etc/passwd)",
    "![x](javascript:alert(1))",
    "![x](data:image/svg+xml,<svg onload=alert(1)>)",
    '[x](https://example.com "a" onmouseover="alert(1)")',
    '<https://example.com/"onmouseover="alert(1)>',
    "```html\n<script>alert(1)</script>\n```",
    "```\n</code></pre><script>alert(1)</script>\n```",
    "`</code><script>alert(1)</script>`",
    "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "<!-- --><script>alert(1)</script>",
    "<scr<script>ipt>alert(1)</script>",
]

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del",
    "code", "pre", "span", "blockquote", "ul", "ol", "li", "a",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"href", "title", "rel", "class", "start"}


class Elements(HTMLParser):
    """Collect the elements a browser would build from the HTML, with their attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("attack", XSS)
def test_it_lets_nothing_executable_through(attack):
    html = render_markdown(attack)

    for tag, attributes in Elements(html).found:
        assert tag in ALLOWED_TAGS, html
        assert set(attributes) <= ALLOWED_ATTRIBUTES, html
        href = attributes.get("href")
        if href is not None:
            assert href.startswith(("https://", "http://", "mailto:")), html
    assert "<script" not in html.lower()


def test_it_shows_raw_html_as_text():
    assert render_markdown("<b>hi</b> <script>x</script>") == (
        "<p>&lt;b&gt;hi&lt;/b&gt; &lt;script&gt;x&lt;/script&gt;</p>\n"
    )


@pytest.mark.parametrize("attack", [a for a in XSS if a.startswith("<")])
def test_it_would_sanitise_raw_html_even_if_markdown_passed_it(attack):
    # Defence in depth: the sanitiser alone, on raw HTML, as if markdown-it let it through.
    html = render._cleaner.clean(attack)

    for tag, attributes in Elements(html).found:
        assert tag in ALLOWED_TAGS, html
        assert set(attributes) <= ALLOWED_ATTRIBUTES, html
        assert attributes.get("href", "https://").startswith(("https://", "http://", "mailto:"))
    assert "<script" not in html.lower()
