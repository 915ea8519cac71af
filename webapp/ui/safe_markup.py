"""Chat text made safe for Gradio's Markdown: raw HTML shown as text, images only on a click.

Gradio renders a message with marked and DOMPurify in the browser. DOMPurify keeps `style`,
forms and remote `src`, so everything reaching a Chatbot goes through `safe_markdown` first:

- outside code, every `<` that could open an HTML tag becomes `&lt;`, except a few harmless
  tags written bare (no attributes) and `<http(s)://…>` autolinks;
- `![alt](src)` and reference-style images stay images only for inline PNG/JPEG/GIF/WebP
  `data:` URLs; a web address becomes a "load image" link the viewer has to click; anything
  else becomes a short note;
- code is located twice (markdown-it-py's block parse, then a stricter check of where marked
  could end it) and kept as written only where both agree; an inline code span holding markup
  is kept when nothing around it could make marked read it differently, else it is rewritten
  as `<code>` with its content escaped.

LaTeX is taken out first exactly as Gradio does (a regex per delimiter pair, before Markdown),
because Gradio escapes what it took out and parses only what is left. Gradio's renderer cannot
tell "$x$" from "$5 and $10", so `$` is not one of its delimiters: outside code, single-dollar
formulas by Pandoc's rule (webapp/ui/dollar_math.py) are written `\\(…\\)` first, and every other
`$` stays a dollar sign. Pure; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from markdown_it import MarkdownIt

from webapp.ui.dollar_math import dollars_as_parens
from webapp.ui.markup_images import BROKEN, ImageRewriter

Delimiters = tuple[tuple[str, str], ...]
# The chat's, the share page's and Compare's Chatbots (webapp/ui/app.py LATEX), in order.
# Single dollars are not among them: safe_markdown writes "$x$" as "\\(x\\)" where it is math.
INLINE = ("\\(", "\\)")
LATEX_CHAT: Delimiters = (("$$", "$$"), ("\\[", "\\]"), INLINE)
LATEX_MARKDOWN: Delimiters = (("$$", "$$"),)  # gr.Markdown's default


def chatbot_latex() -> list[dict[str, str | bool]]:
    """LATEX_CHAT as a Chatbot's `latex_delimiters`: the sanitizer must mask the same pairs."""
    return [
        {"left": left, "right": right, "display": left in ("$$", "\\[")}
        for left, right in LATEX_CHAT
    ]


IMAGE_ENDPOINT = "/parley/image"

# Inline formatting kept when written bare (no attributes). Structural tags (div, p, span,
# table, ...) are not: a bare one renders as an empty element and hides the text of a message
# that talks about HTML ("what does <div> do?"), and `pre` opens an HTML block that blank lines
# do not end. `code` stays: inline code holding markup is rewritten as <code>…</code>.
ALLOWED_TAGS = frozenset(
    (
        "b",
        "i",
        "em",
        "strong",
        "u",
        "s",
        "del",
        "ins",
        "sub",
        "sup",
        "mark",
        "kbd",
        "small",
        "code",
        "br",
        "hr",
        "details",
        "summary",
    )
)
_BARE_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)[ \t]*/?>")
_AUTOLINK = re.compile(r"<https?://[^\s<>`\"'\\]+>", re.IGNORECASE)
_MARKUP = re.compile(r"<[A-Za-z/!?]|!\[|```mermaid")  # nothing to do without one of these
_SPECIAL = re.compile(r"[\\!<]")
_TAG_OPENER = re.compile(r"<(?=[A-Za-z/!?])")
_TABLE_RULE = re.compile(r"[ \t>]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*")
_INDENTED = re.compile(r"(?:[ ]{0,3}>[ ]?)*(?:[ ]{4}|\t)|\s*$")
_MERMAID = re.compile(r"^([ \t>*+\-0-9.)]*```)(mermaid)", re.MULTILINE)
_PLACEHOLDER = "\ue000{}\ue001"
_PLACEHOLDER_RE = re.compile("\ue000(\\d+)\ue001")
_UNTRUSTING = ("[", "~", "://", "www.")  # marked may read backticks here as something else
_CODE_ENTITIES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "*": "&#42;",
    "_": "&#95;",
    "[": "&#91;",
    "]": "&#93;",
    "~": "&#126;",
    "|": "&#124;",
    "`": "&#96;",
    "!": "&#33;",
    "\n": " ",
}

TEXT, FENCE, CODE = 0, 1, 2  # how a line is treated: fully, as a fence line, kept as is


def _block_parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": True}).enable("table")
    parser.disable("inline")  # block structure and link references are all that is needed
    return parser


_PARSER = _block_parser()


def safe_markdown(
    text: str, *, latex: Delimiters = LATEX_CHAT, image_endpoint: str = IMAGE_ENDPOINT
) -> str:
    """`text` with raw HTML escaped, images turned into click-to-load links, and single-dollar
    math written `\\(…\\)` where `latex` renders that."""
    if not _MARKUP.search(text) and not ("$" in text and INLINE in latex):
        return text
    return _sanitize(text, latex, image_endpoint)


@lru_cache(maxsize=1024)  # stored messages are rendered again on every open and update
def _sanitize(text: str, latex: Delimiters, image_endpoint: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
    text = text.replace("\ue000", "\ufffd").replace("\ue001", "\ufffd")
    if "$" in text and INLINE in latex:
        text = _dollar_math(text, latex)
    masked, formulas = mask_latex(text, latex)
    env: dict[str, object] = {}
    tokens = _PARSER.parse(masked, env)
    lines = masked.split("\n")
    kinds = _line_kinds(tokens, lines)
    references = env.get("references") or {}
    images = ImageRewriter(references, image_endpoint)  # type: ignore[arg-type]
    out: list[str] = []
    group: list[str] = []
    for line, kind in zip(lines, kinds, strict=True):
        if kind == TEXT and line.strip():
            group.append(line)
            continue
        if group:
            out.append(_inline(group, images, trust=not references))
            group = []
        out.append(line if kind == CODE else _fence_line(line) if kind == FENCE else line)
    if group:
        out.append(_inline(group, images, trust=not references))
    return unmask_latex("\n".join(out), formulas)


def _dollar_math(text: str, latex: Delimiters) -> str:
    """Single-dollar formulas outside code written `\\(…\\)`; code and other dollars kept.

    Where code is only decides what renders as math; what is safe is decided afterwards, on
    the rewritten text, exactly as for any other text."""
    masked, formulas = mask_latex(text, latex)
    lines = masked.split("\n")
    kinds = _line_kinds(_PARSER.parse(masked, {}), lines)
    out: list[str] = []
    group: list[str] = []
    for line, kind in zip(lines, kinds, strict=True):
        if kind == TEXT and line.strip():
            group.append(line)
            continue
        if group:
            out.append(_dollars_outside_code_spans("\n".join(group)))
            group = []
        out.append(line)
    if group:
        out.append(_dollars_outside_code_spans("\n".join(group)))
    return unmask_latex("\n".join(out), formulas)


def _dollars_outside_code_spans(paragraph: str) -> str:
    out: list[str] = []
    position = 0
    for start, end, _ in code_spans(paragraph):
        out.append(dollars_as_parens(paragraph[position:start]))
        out.append(paragraph[start:end])
        position = end
    out.append(dollars_as_parens(paragraph[position:]))
    return "".join(out)


def unescape_for_edit(shown: str) -> str:
    """A message's text as the user wrote it, from what the Chatbot's edit box shows (the
    sanitized text): escaped tags and broken images back as typed. The rarer rewrites (load
    image links, <code> spans) stay as shown."""
    return shown.replace("&lt;", "<").replace(BROKEN, "![")


def mask_latex(text: str, delimiters: Sequence[tuple[str, str]]) -> tuple[str, list[str]]:
    """Take formulas out as Gradio's MarkdownCode does: each pair in turn, lazily, anywhere."""
    found: list[str] = []

    def hold(match: re.Match[str]) -> str:
        found.append(match.group(0))
        return _PLACEHOLDER.format(len(found) - 1)

    for left, right in delimiters:
        text = re.sub(re.escape(left) + r"([\s\S]+?)" + re.escape(right), hold, text)
    return text, found


def unmask_latex(text: str, formulas: Sequence[str]) -> str:
    """Put back what mask_latex took out (formulas may hold placeholders of earlier pairs)."""
    while _PLACEHOLDER_RE.search(text):
        text = _PLACEHOLDER_RE.sub(lambda m: formulas[int(m.group(1))], text)
    return text


def _line_kinds(tokens: Sequence[object], lines: list[str]) -> list[int]:
    kinds = [TEXT] * len(lines)
    for token in tokens:
        kind, line_map = getattr(token, "type", ""), getattr(token, "map", None)
        if not line_map:
            continue
        start, end = line_map
        if kind == "fence":
            _mark_fence(kinds, lines, start, end, str(getattr(token, "markup", "")))
        elif kind == "code_block":
            for number in range(start, end):
                if _INDENTED.match(lines[number]):
                    kinds[number] = CODE
    return kinds


def _mark_fence(kinds: list[int], lines: list[str], start: int, end: int, markup: str) -> None:
    """Code lines of a fence: up to the first line marked could take as its end (it closes a
    fence on any line starting with the opening run, whatever follows)."""
    kinds[start] = FENCE
    closer = markup[:1] * len(markup)
    for number in range(start + 1, end):
        if lines[number].lstrip(" \t>").startswith(closer):
            kinds[number] = FENCE
            return  # lines after it, if any, are read as text
        kinds[number] = CODE


def _fence_line(line: str) -> str:
    """A fence's opening or closing line: its info string is never markup.

    "```mermaid" gets a space: Gradio renders such a block by inserting its text as HTML
    (which mermaid's entity decoding would undo any escaping of), so it is shown as code.
    """
    line = _MERMAID.sub(r"\1 \2", line)
    return _TAG_OPENER.sub("&lt;", line).replace("![", "!&#91;")


def _inline(group: list[str], images: ImageRewriter, *, trust: bool) -> str:
    """One paragraph's lines: code spans found, markup outside them escaped."""
    text = _MERMAID.sub(r"\1 \2", "\n".join(group))
    trust = trust and not any(marker in text for marker in _UNTRUSTING)
    table = any("|" in line and "-" in line and _TABLE_RULE.fullmatch(line) for line in group)
    out: list[str] = []
    position = 0
    for start, end, ticks in code_spans(text):
        out.append(_escape_text(text[position:start], images))
        out.append(_code_span(text[start:end], ticks, trust=trust, table=table))
        position = end
    out.append(_escape_text(text[position:], images))
    return "".join(out)


def code_spans(text: str) -> list[tuple[int, int, int]]:
    """CommonMark code spans as (start, end, backticks): a run closed by one of equal length."""
    spans: list[tuple[int, int, int]] = []
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char == "\\":
            index += 2  # an escaped backtick opens nothing
            continue
        if char != "`":
            index += 1
            continue
        run_end = index
        while run_end < length and text[run_end] == "`":
            run_end += 1
        ticks = run_end - index
        close = _closing_run(text, run_end, ticks)
        if close < 0:
            index = run_end  # no closing run: the backticks are literal
            continue
        spans.append((index, close + ticks, ticks))
        index = close + ticks
    return spans


def _closing_run(text: str, start: int, ticks: int) -> int:
    for match in re.finditer(r"`+", text[start:]):
        if len(match.group(0)) == ticks:
            return start + match.start()
    return -1


def _code_span(span: str, ticks: int, *, trust: bool, table: bool) -> str:
    content = span[ticks:-ticks]
    if not _MARKUP.search(content):
        return span  # nothing in it could be markup, however marked reads it
    if trust and "\n" not in content and not (table and "|" in content):
        return span
    if content.startswith(" ") and content.endswith(" ") and content.strip():
        content = content[1:-1]  # CommonMark strips one space on each side
    return "<code>" + "".join(_CODE_ENTITIES.get(char, char) for char in content) + "</code>"


def _escape_text(text: str, images: ImageRewriter) -> str:
    """Text outside code: markup escaped, images rewritten, backslash escapes kept."""
    out: list[str] = []
    position = 0
    for match in _SPECIAL.finditer(text):
        index = match.start()
        if index < position:
            continue  # inside something already handled
        out.append(text[position:index])
        char = text[index]
        if char == "\\":
            out.append(text[index : index + 2])
            position = index + 2
        elif char == "!":
            replacement, position = images.rewrite(text, index)
            out.append(replacement)
        else:
            replacement, position = _angle(text, index)
            out.append(replacement)
    out.append(text[position:])
    return "".join(out)


def _angle(text: str, index: int) -> tuple[str, int]:
    """What a `<` at `index` becomes, and where scanning goes on."""
    for pattern in (_AUTOLINK, _BARE_TAG):
        match = pattern.match(text, index)
        if match and (pattern is _AUTOLINK or match.group(1).lower() in ALLOWED_TAGS):
            return match.group(0), match.end()
    if _TAG_OPENER.match(text, index):
        return "&lt;", index + 1
    return "<", index + 1
