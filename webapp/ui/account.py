"""Who is signed in, as the page's header line shows it."""

from __future__ import annotations

import re

from webapp.i18n import t
from webapp.ui.safe_markup import LATEX_MARKDOWN, safe_markdown

# Every ASCII punctuation character: CommonMark lets each be escaped with a backslash.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def signed_in_text(name: str, lang: str) -> str:
    """ "Signed in as **name**", the name shown as written (it may hold Markdown or HTML)."""
    shown = "**" + _PUNCTUATION.sub(r"\\\1", name) + "**"
    return safe_markdown(t("Signed in as {name}", lang).format(name=shown), latex=LATEX_MARKDOWN)
