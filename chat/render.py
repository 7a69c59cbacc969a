"""
Markdown of the model's answers to safe HTML.

Model output is untrusted input: raw HTML in it is never passed through (markdown-it
escapes it), and the produced HTML goes through an allow-list sanitiser all the same, so
a bug or a new syntax in one layer cannot smuggle a script past the other.
"""

from typing import Any

import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

# Pygments writes <span class="k">...; these are the only classes its HTML can hold.
TOKEN_CLASSES = {name for name in STANDARD_TYPES.values() if name}
ALLOWED_TAGS = (
    {"p", "br", "hr", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6"}
    | {"strong", "em", "s", "del", "code", "pre", "span", "a"}
    | {"ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td"}
)
ALIGN_CLASSES = {"align-left", "align-center", "align-right"}
SAFE_SCHEMES = ("http://", "https://", "mailto:")

_formatter = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, attrs: str) -> str:
    """Return highlighted <pre>, or "" to let markdown-it escape the block as it is."""
    if not lang:
        return ""
    try:
        lexer = get_lexer_by_name(lang, stripnl=False)
    except ClassNotFound:
        return ""
    label = f'<span class="code-lang">{escape(lexer.name)}</span>'
    return (
        f'<pre class="highlight">{label}<code>{highlight(code, lexer, _formatter)}</code></pre>\n'
    )


def _alignment_to_class(state: StateCore) -> None:
    # markdown-it aligns table cells with a style attribute; styles are not allowed
    # (CSP and the sanitiser), so say it with a class instead.
    for token in state.tokens:
        if token.type in ("th_open", "td_open"):
            style = token.attrs.pop("style", None)
            if isinstance(style, str) and style.startswith("text-align:"):
                token.attrSet("class", "align-" + style.removeprefix("text-align:"))


_markdown = (
    MarkdownIt("commonmark", {"html": False, "highlight": _highlight})
    .enable("table")
    .enable("strikethrough")
)
_markdown.core.ruler.push("alignment_to_class", _alignment_to_class)


def _image_as_link(
    renderer: Any, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # Images are not shown (no remote loads from a model's answer): link to them instead.
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = renderer.renderInlineAsText(token.children or [], options, env) or src
    return f'<a href="{escape(src)}">{escape(alt)}</a>'


_markdown.add_render_rule("image", _image_as_link)


def _keep_safe_links(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href":
        return value if value.strip().lower().startswith(SAFE_SCHEMES) else None
    return value


_cleaner = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    clean_content_tags={"script", "style"},
    attributes={"a": {"href", "title"}, "ol": {"start"}},
    attribute_filter=_keep_safe_links,
    allowed_classes={
        "pre": {"highlight"},
        "span": TOKEN_CLASSES | {"code-lang"},
        "th": ALIGN_CLASSES,
        "td": ALIGN_CLASSES,
    },
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


def render_markdown(text: str) -> SafeString:
    """Render an answer's Markdown as sanitised HTML, safe to put in a page as it is."""
    html = _markdown.render(text)
    return mark_safe(_cleaner.clean(html))
