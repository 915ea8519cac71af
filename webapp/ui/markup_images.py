"""Markdown images in chat text: inline data images kept, web images behind a click. Pure.

Used by webapp/ui/safe_markup.py on text outside code. An image that cannot be parsed exactly
loses its `[` (an entity), so marked can make neither an image nor a link of it.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from markdown_it.common.utils import normalizeReference

DATA_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+={0,2}")
BROKEN = "!&#91;"  # "![" that opens nothing
_LABEL_DROP = re.compile(r"[\[\]()<>\\`*_!$|~#&\"'\x00-\x1f]+")
_HOST_KEEP = re.compile(r"[^a-z0-9.\-:]")
# Changing these would move Gradio's LaTeX matches (see safe_markup.mask_latex): such an
# image is left as broken text instead of rewritten.
_DELICATE = ("$", "\\", "\ue000")


@dataclass(frozen=True, slots=True)
class ImageRewriter:
    """Rewrites the image starting at a `![` (link references come from markdown-it)."""

    references: Mapping[str, Mapping[str, str]]
    endpoint: str  # the "load image" link's target: GET endpoint?url=<the image's URL>

    def rewrite(self, text: str, index: int) -> tuple[str, int]:
        """(replacement, where scanning goes on) for the `!` at `index`."""
        if not text.startswith("![", index):
            return "!", index + 1
        parsed = self._parse(text, index)
        if parsed is None or any(mark in text[index : parsed[2]] for mark in _DELICATE):
            return BROKEN, index + 2
        alt, source, end = parsed
        return self.replacement(alt, source), end

    def replacement(self, alt: str, source: str) -> str:
        """An inline data image as it was, a web image as a link, anything else as a note."""
        label = " ".join(_LABEL_DROP.sub(" ", alt).split())[:80]
        source = source.strip()
        if DATA_IMAGE.fullmatch(source):
            return f"![{label}]({source})"
        url = "https:" + source if source.startswith("//") else source
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
        except ValueError:
            parts, host = None, ""
        if parts is not None and parts.scheme.lower() in ("http", "https") and host:
            shown = f"{label} ({_host(host)})" if label else f"({_host(host)})"
            return f"[🖼 load image: {shown}]({self.endpoint}?url={quote(url, safe='')})"
        return f"🖼 image not loaded{': ' + label if label else ''} (not a web address)"

    def _parse(self, text: str, index: int) -> tuple[str, str, int] | None:
        """(alt, source, end) of `![alt](source "title")`, `![alt][ref]`, `![alt][]` or
        `![ref]`; None when it is not exactly one of those."""
        alt_end = _label_end(text, index + 1)
        if alt_end < 0:
            return None
        alt = text[index + 2 : alt_end - 1]
        if text.startswith("(", alt_end):
            destination = _destination(text, alt_end)
            if destination is None:
                return None
            source, end = destination
            return alt, html.unescape(source), end
        label, end = alt, alt_end
        if text.startswith("[]", alt_end):
            end = alt_end + 2
        elif text.startswith("[", alt_end):
            end = _label_end(text, alt_end)
            if end < 0:
                return None
            label = text[alt_end + 1 : end - 1]
        reference = self.references.get(normalizeReference(label))
        if not reference:
            return None
        return alt, str(reference.get("href", "")), end


def _host(host: str) -> str:
    """The image's host as the viewer should read it (punycode for non-ASCII names)."""
    host = host.lower()
    if not host.isascii():
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii")
    return _HOST_KEEP.sub("", host)[:100] or "?"


def _label_end(text: str, open_bracket: int) -> int:
    """The index just past the `]` matching the `[` at open_bracket, or -1."""
    depth, index = 0, open_bracket
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return -1


def _skip_space(text: str, index: int) -> int:
    """Past spaces and tabs, and at most one line end."""
    newline = False
    while index < len(text) and text[index] in " \t\n":
        if text[index] == "\n":
            if newline:
                break
            newline = True
        index += 1
    return index


def _destination(text: str, open_paren: int) -> tuple[str, int] | None:
    """(destination, end) of `(dest "title")` starting at open_paren, or None."""
    index = _skip_space(text, open_paren + 1)
    if text.startswith("<", index):
        close = text.find(">", index + 1)
        if close < 0 or any(c in text[index + 1 : close] for c in "\n<"):
            return None
        source, index = text[index + 1 : close], close + 1
    else:
        depth, end = 0, index
        while end < len(text):
            char = text[end]
            if char == "\\":
                end += 2
                continue
            if char.isspace() or ord(char) < 0x20:
                break
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            end += 1
        if depth:
            return None
        source, index = text[index:end], end
    after = _skip_space(text, index)
    if after > index and after < len(text) and text[after] in "\"'(":
        closer = ")" if text[after] == "(" else text[after]
        end = after + 1
        while end < len(text) and text[end] != closer:
            end += 2 if text[end] == "\\" else 1
        if end >= len(text):
            return None
        after = _skip_space(text, end + 1)
    if not text.startswith(")", after):
        return None
    return source, after + 1
