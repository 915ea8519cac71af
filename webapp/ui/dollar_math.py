"""Single-dollar TeX told apart from money: "$x^2$" is math, "it costs $5 and $10" is not.

The rule of Pandoc and GitHub: the opening `$` has neither a space nor a digit right after
it, the closing `$` has no space right before it and no digit right after it, `$$` is never a
single delimiter, and `\\$` is a dollar sign. Pure; no I/O.
"""

from __future__ import annotations

DIGITS = frozenset("0123456789")


def inline_math_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each single-dollar formula in `text`, its dollars included."""
    spans: list[tuple[int, int]] = []
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char == "\\":
            index += 2  # an escaped character opens nothing
            continue
        if char != "$":
            index += 1
            continue
        if text.startswith("$$", index):  # display math, or dollars of no formula
            while index < length and text[index] == "$":
                index += 1
            continue
        close = _closing(text, index + 1)
        if close < 0:
            index += 1  # a literal dollar; the next one may still open a formula
            continue
        spans.append((index, close + 1))
        index = close + 1
    return spans


def _closing(text: str, start: int) -> int:
    """Where the formula opened just before `start` closes, or -1 when it is no formula."""
    if start >= len(text) or text[start].isspace() or text[start] in DIGITS:
        return -1
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "\n" and text[index + 1 :].lstrip(" \t").startswith("\n"):
            return -1  # a blank line ends the paragraph, and with it any formula
        if char == "$":
            after = text[index + 1 : index + 2]
            if text[index - 1].isspace() or after == "$" or after in DIGITS:
                return -1
            return index
        index += 1
    return -1


def dollars_as_parens(text: str) -> str:
    """`text` with each single-dollar formula written `\\(…\\)` and every other dollar kept."""
    spans = inline_math_spans(text)
    if not spans:
        return text
    out: list[str] = []
    position = 0
    for start, end in spans:
        out.append(text[position:start])
        out.append("\\(" + text[start + 1 : end - 1] + "\\)")
        position = end
    out.append(text[position:])
    return "".join(out)
