"""Rough token counts for text and requests when the provider reports no usage. Pure; no I/O.

Without the model's tokenizer this is an estimate, and it is always stored marked as one:
about four characters per token for Latin-script text, one token per CJK character, a few
tokens of overhead per message, and a flat figure per image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators, as OpenAI's cookbook counts them
IMAGE_TOKENS = 256  # an image part; real costs depend on size and the model's detail setting


# CJK ideographs, kana and hangul: roughly one token each in common tokenizers.
_WIDE = re.compile("[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]")


def text_tokens(text: str) -> int:
    """Estimated tokens of one text (a regex counts the wide characters: a long chat's
    estimate is taken before every turn, so it must not walk the text in Python)."""
    if not text:
        return 0
    wide = 0 if text.isascii() else len(_WIDE.findall(text))
    narrow = len(text) - wide
    return wide + -(-narrow // CHARS_PER_TOKEN)


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return text_tokens(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text":
            total += text_tokens(str(part.get("text") or ""))
        elif part.get("type") in ("image_url", "video_url"):
            total += IMAGE_TOKENS
    return total


def prompt_tokens(
    messages: Iterable[Mapping[str, Any]], tools: list[dict[str, Any]] | None = None
) -> int:
    """Estimated prompt tokens of a request: its messages and the tool schemas it offers."""
    total = 0
    for message in messages:
        total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            total += text_tokens(str(function.get("name") or ""))
            total += text_tokens(str(function.get("arguments") or ""))
    if tools:
        total += text_tokens(json.dumps(tools, ensure_ascii=False))
    return total
