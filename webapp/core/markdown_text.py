"""Small Markdown builders shared by the chat view and the exports. Pure; no I/O."""

from __future__ import annotations

import re

EXPORT_STATE_MARKS = {
    "stopped": "⏹ Stopped: the answer above is partial.",
    "interrupted": "⚠ Interrupted: the server stopped while this answer was streaming.",
    "streaming": "… Still streaming when exported: the answer above is partial.",
}


def fenced(text: str, language: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside `text`."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def quoted(text: str) -> str:
    """`text` as a Markdown block quote."""
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines())


def thinking_details(reasoning: str) -> str:
    """Reasoning in a collapsed <details> block that the text inside cannot close early."""
    safe = re.sub(r"</details", "&lt;/details", reasoning, flags=re.IGNORECASE)
    return f"<details><summary>Thinking</summary>\n\n{safe}\n\n</details>"


def answer_mark(state: str, error: str | None) -> str:
    """The note an exported answer carries: partial, failed, or a remark on a complete one."""
    if state == "error":
        return f"⚠ Error: {error or 'this answer failed.'}"
    if error and state == "complete":
        return f"ⓘ {error}"
    return EXPORT_STATE_MARKS.get(state, "")
