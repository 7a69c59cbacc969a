"""
Hostile answers a model could write: each payload would run script, load something, or
restyle the page if it reached the DOM as markup. Shared by the renderer's tests
(tests/test_xss.py) and the browser's (tests/e2e/test_xss.py).

A payload that runs sets `window.__xss` or opens a dialog, so the browser test can tell.
Each payload is a whole Markdown block (every fence closed), so the corpus can be sent
as one answer, the payloads separated by blank lines.
"""

SCRIPT_TAGS = [
    "<script>window.__xss=1</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<script/src=data:,window.__xss=1></script>",
    "<scr<script>ipt>window.__xss=1</script>",
    "<<script>script>window.__xss=1<</script>/script>",
    "<!-- --><script>window.__xss=1</script>",
    "<script>alert(1)//",
]

EVENT_HANDLERS = [
    '<img src=x onerror="window.__xss=1">',
    "<img src=x onerror=alert(1)>",
    "<body onload=window.__xss=1>",
    "<details open ontoggle=window.__xss=1>x</details>",
    "<input autofocus onfocus=window.__xss=1>",
    "<video><source onerror=window.__xss=1></video>",
    "<div onmouseover='window.__xss=1'>hover</div>",
    "<marquee onstart=window.__xss=1>x</marquee>",
    '<a href="https://example.com" onclick="window.__xss=1">click</a>',
    "<img src=x onerror\t=\twindow.__xss=1>",
    "<img/src=x/onerror=window.__xss=1>",
]

DANGEROUS_URLS = [
    '<a href="javascript:window.__xss=1">x</a>',
    '<a href="data:text/html,<script>window.__xss=1</script>">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    "<iframe src=javascript:window.__xss=1></iframe>",
    "<iframe srcdoc='<script>parent.__xss=1</script>'></iframe>",
    "<object data=javascript:window.__xss=1></object>",
    "<embed src=javascript:window.__xss=1>",
    "<form action=javascript:window.__xss=1><button>x</button></form>",
    "<button formaction=javascript:window.__xss=1>x</button>",
    "<meta http-equiv=refresh content='0;url=javascript:window.__xss=1'>",
    "<base href=javascript:window.__xss=1//>",
    "<link rel=stylesheet href=https://evil.example/x.css>",
    "<img src=https://evil.example/pixel.png>",
    '<img srcset="https://evil.example/1x.png 1x">',
]

SVG_AND_MATHML = [
    "<svg onload=window.__xss=1>",
    "<svg><script>window.__xss=1</script></svg>",
    "<svg><a xlink:href=javascript:window.__xss=1><text y=20>x</text></a></svg>",
    "<svg><animate onbegin=window.__xss=1 attributeName=x dur=1s>",
    "<svg><set attributeName=href to=javascript:window.__xss=1 />",
    "<svg><foreignObject><img src=x onerror=window.__xss=1></foreignObject></svg>",
    "<math><mi xlink:href=javascript:window.__xss=1>x</mi></math>",
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=1>",
    '<svg></p><style><a id="</style><img src=x onerror=window.__xss=1>">',
]

CSS_INJECTION = [
    "<style>body{display:none}</style>",
    '<div style="background:url(javascript:window.__xss=1)">x</div>',
    '<p style="position:fixed;inset:0;background:red">covered</p>',
    '<span style="behavior:url(x.htc)">x</span>',
    "<style>@import 'https://evil.example/x.css';</style>",
    '<a href="https://example.com" style="position:fixed;top:0">fake button</a>',
    "| a |\n|:--|\n| b |",  # markdown-it's own style="text-align" must not survive
]

ENTITIES_AND_ENCODINGS = [
    "&lt;script&gt;window.__xss=1&lt;/script&gt;",
    "&#60;script&#62;window.__xss=1&#60;/script&#62;",
    '<a href="&#106;avascript:window.__xss=1">x</a>',
    '<a href="&#x6A;&#x61;&#x76;&#x61;script:window.__xss=1">x</a>',
    '<a href="jav&#x09;ascript:window.__xss=1">x</a>',
    '<a href="javascript&colon;window.__xss=1">x</a>',
    "<img src=x onerror=&#119;indow.__xss=1>",
    "%3Cscript%3Ewindow.__xss=1%3C/script%3E",
    "\\u003cscript\\u003ewindow.__xss=1\\u003c/script\\u003e",
]

MARKDOWN_TRICKS = [
    "[x](javascript:window.__xss=1)",
    "[x](JaVaScRiPt:window.__xss=1)",
    "[x]( javascript:window.__xss=1)",
    "[x](<javascript:window.__xss=1>)",
    "[x](java\tscript:window.__xss=1)",
    "[x](&#106;avascript:window.__xss=1)",
    "[x](javascript&#58;window.__xss=1)",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MTwvc2NyaXB0Pg==)",
    "[x](file:///etc/passwd)",
    "![x](javascript:window.__xss=1)",
    "![x](data:image/svg+xml,<svg onload=window.__xss=1>)",
    "![x](data:image/png;base64,iVBORw0KGgo=)",
    '![x" onerror="window.__xss=1](https://example.com/a.png)',
    '[x](https://example.com "a" onmouseover="window.__xss=1")',
    '[x](https://example.com "\\"><script>window.__xss=1</script>")',
    '<https://example.com/"onmouseover="window.__xss=1>',
    "<javascript:window.__xss=1>",
    "<vbscript:msgbox(1)>",
    "[x][evil]\n\n[evil]: javascript:window.__xss=1",
    "![x][pic]\n\n[pic]: data:text/html,<script>window.__xss=1</script>",
    "[<img src=x onerror=window.__xss=1>](https://example.com)",
    "[x](https://example.com/<script>window.__xss=1</script>)",
    "**<img src=x onerror=window.__xss=1>**",
    "| a |\n|---|\n| <img src=x onerror=window.__xss=1> |",
    "> <script>window.__xss=1</script>",
    "- <svg onload=window.__xss=1>",
]

RAW_HTML_BLOCKS = [
    "<div>\n<script>window.__xss=1</script>\n</div>",
    "<table><tr><td onclick=window.__xss=1>x</td></tr></table>",
    "<pre>\n<script>window.__xss=1</script>\n</pre>",
    "<?php echo 1; ?>",
    "<![CDATA[<script>window.__xss=1</script>]]>",
    "<!DOCTYPE html><script>window.__xss=1</script>",
    '<noscript><p title="</noscript><img src=x onerror=window.__xss=1>"></noscript>',
]

CODE_FENCES = [
    "```html\n<script>window.__xss=1</script>\n```",
    "```\n</code></pre><script>window.__xss=1</script>\n```",
    "`</code><script>window.__xss=1</script>`",
    "~~~javascript\n</pre><img src=x onerror=window.__xss=1>\n~~~",
    "    <script>window.__xss=1</script>",
    "```svg\n<svg onload=window.__xss=1>\n```",
]

FENCE_INFO_STRINGS = [
    '```html" onmouseover="window.__xss=1\nx\n```',
    '```"><script>window.__xss=1</script>\nx\n```',
    "```python {onclick=window.__xss=1}\nx = 1\n```",
    "```<img src=x onerror=window.__xss=1>\nx\n```",
    "```javascript:window.__xss=1\nx\n```",
    "``` style=position:fixed;inset:0\nx\n```",
]

UNICODE_OBFUSCATIONS = [
    "[x](java\u200bscript:window.__xss=1)",
    "[x](\u200bjavascript:window.__xss=1)",
    '<a href="java\u0000script:window.__xss=1">x</a>',
    "<scr\u200bipt>window.__xss=1</scr\u200bipt>",
    "\uff1cscript\uff1ewindow.__xss=1\uff1c/script\uff1e",
    "[x](\u202ejavascript:window.__xss=1)",
    "<img src=x \u200bonerror=window.__xss=1>",
    "[x](ja\u00advascript:window.__xss=1)",
]

BREAKOUTS = [
    "</textarea><script>window.__xss=1</script>",
    "</template><img src=x onerror=window.__xss=1>",
    "</title><script>window.__xss=1</script>",
    "</style><script>window.__xss=1</script>",
    "</script><script>window.__xss=1</script>",
    "</noscript><img src=x onerror=window.__xss=1>",
    "</xmp><img src=x onerror=window.__xss=1>",
    "</span></div></article><img src=x onerror=window.__xss=1>",
    '"><img src=x onerror=window.__xss=1>',
    "'><img src=x onerror=window.__xss=1>",
    "--><img src=x onerror=window.__xss=1>",
    "]]><img src=x onerror=window.__xss=1>",
    "{{ 7*7 }}{% debug %}<img src=x onerror=window.__xss=1>",
    '{"html": "<img src=x onerror=window.__xss=1>"}',
]

PAYLOADS = [
    *SCRIPT_TAGS,
    *EVENT_HANDLERS,
    *DANGEROUS_URLS,
    *SVG_AND_MATHML,
    *CSS_INJECTION,
    *ENTITIES_AND_ENCODINGS,
    *MARKDOWN_TRICKS,
    *RAW_HTML_BLOCKS,
    *CODE_FENCES,
    *FENCE_INFO_STRINGS,
    *UNICODE_OBFUSCATIONS,
    *BREAKOUTS,
]
