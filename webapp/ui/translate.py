"""The page in the user's language: every component's fixed text, translated on load and switch.

The layout is written in English. After it is built, `collect` walks its components and keeps
the fixed texts (labels, info lines, placeholders, button texts, static Markdown, choice names)
that have a translation; `Translations.updates` turns them into one update per component.
Text a handler makes later (answers, figures, warnings) is translated where it is made, with
`webapp.i18n.t` and the language kept in the tab's SessionState.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.blocks import Block

from webapp.i18n import LANGUAGES, ZH, pick_language, t
from webapp.ui.session import SessionState

TEXT_PROPS = ("label", "info", "placeholder")
# Components whose `value` is their fixed text. Other values (a Textbox's) belong to the user.
VALUE_IS_TEXT = (gr.Button, gr.UploadButton, gr.Markdown)
HAS_CHOICES = (gr.Radio, gr.Dropdown, gr.CheckboxGroup)


@dataclass(frozen=True, slots=True)
class Translatable:
    """One component and its English texts, by property."""

    component: Block
    texts: dict[str, str]
    choices: tuple[tuple[str, Any], ...] = ()  # (English name, value) when a name translates

    def update(self, lang: str) -> Any:
        changes: dict[str, Any] = {prop: t(text, lang) for prop, text in self.texts.items()}
        if self.choices:
            changes["choices"] = [(t(name, lang), value) for name, value in self.choices]
        return gr.update(**changes)


def _choices(block: Block) -> tuple[tuple[str, Any], ...]:
    pairs = []
    for choice in getattr(block, "choices", None) or []:
        name, value = choice if isinstance(choice, tuple | list) else (choice, choice)
        pairs.append((str(name), value))
    return tuple(pairs) if any(name in ZH for name, _ in pairs) else ()


def _translatable(block: Block) -> Translatable | None:
    texts = {}
    for prop in TEXT_PROPS:
        value = getattr(block, prop, None)
        if isinstance(value, str) and value in ZH:
            texts[prop] = value
    value = getattr(block, "value", None)
    if isinstance(block, VALUE_IS_TEXT) and isinstance(value, str) and value in ZH:
        texts["value"] = value
    choices = _choices(block) if isinstance(block, HAS_CHOICES) else ()
    if not texts and not choices:
        return None
    return Translatable(block, texts, choices)


def collect(demo: gr.Blocks, skip: Iterable[Block] = ()) -> list[Translatable]:
    """Every component of `demo` with fixed text that has a translation."""
    skipped = {id(block) for block in skip}
    found = []
    for block in demo.blocks.values():
        if id(block) in skipped:
            continue
        item = _translatable(block)
        if item is not None:
            found.append(item)
    return found


class Translations:
    """The language events: on page load (browser language or the stored choice) and switch."""

    def __init__(self, items: list[Translatable]) -> None:
        self.items = items

    @property
    def components(self) -> list[Block]:
        return [item.component for item in self.items]

    def updates(self, lang: str) -> list[Any]:
        return [item.update(lang) for item in self.items]

    def on_load(self, request: gr.Request, state: SessionState, stored: str) -> list[Any]:
        """The page opened: use the stored choice, else the browser's language."""
        headers = getattr(request, "headers", None) or {}
        lang = pick_language(stored, headers.get("accept-language"))
        state.lang = lang
        if lang == "en":  # the page is built in English: nothing to change
            return [lang, *[gr.skip() for _ in self.items]]
        return [lang, *self.updates(lang)]

    def switch(self, lang: str, state: SessionState) -> list[Any]:
        """The user picked a language: remember it in this browser and relabel the page."""
        lang = lang if isinstance(lang, str) and lang in LANGUAGES else "en"
        state.lang = lang
        return [lang, state, *self.updates(lang)]


# Each language named in itself, so never translated; Chinese with its code as well, which
# stays readable on a machine without a CJK font (where "中文" alone shows as two boxes).
PICKER_NAMES = {"en": "English", "zh": "中文 / ZH"}


def language_picker() -> gr.Radio:
    """The language switch: English, 中文 / ZH."""
    return gr.Radio(
        [(PICKER_NAMES.get(code, name), code) for code, name in LANGUAGES.items()],
        value="en",
        show_label=False,
        elem_id="language",
        container=False,
    )
