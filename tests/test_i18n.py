"""Chinese and English: language choice, the catalog's consistency, and that every fixed text
of the page has a Chinese translation (a new English label without one fails here)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pytest

from webapp.config import load_settings
from webapp.i18n import ZH, pick_language, t
from webapp.server import Parley, build
from webapp.ui import translate
from webapp.ui.render import stats_line
from webapp.ui.session import SessionState

# Names that are the same in every language: products, providers, tools, symbols.
NOT_TRANSLATED = {
    "### Parley",
    "SiliconFlow",
    "jiekou.ai",
    "Markdown",
    "JSON",
    "English",
    "中文 / ZH",
    "calculator",
    "current_time",
    "search_conversations",
    "Run",
}
API_LABELS = {"message", "conversation_id", "model", "parameters_json", "answer_so_far", "result"}


@pytest.fixture(scope="module")
def parley(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parley]:
    folder = tmp_path_factory.mktemp("i18n")
    settings = load_settings(
        {"DATABASE_URL": f"sqlite:///{folder / 'parley.db'}", "SILICONFLOW_API_KEY": "k"},
        dotenv_path=None,
    )
    built = build(settings)
    yield built
    built.engine.dispose()


def fixed_texts(demo: gr.Blocks) -> set[str]:
    """Every label, info line, placeholder, button text, static Markdown and choice name."""
    found: set[str] = set()
    for block in demo.blocks.values():
        for prop in ("label", "info", "placeholder"):
            value = getattr(block, prop, None)
            if isinstance(value, str) and value.strip():
                found.add(value)
        value = getattr(block, "value", None)
        if isinstance(block, gr.Button | gr.Markdown) and isinstance(value, str) and value:
            found.add(value)
        if isinstance(block, gr.Radio | gr.CheckboxGroup) or (
            isinstance(block, gr.Dropdown) and block.elem_id in ("tool-choice", "usage-period")
        ):
            for choice in block.choices or []:
                found.add(str(choice[0]))
    return found


@pytest.mark.parametrize(
    ("stored", "header", "expected"),
    [
        ("", "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("", "zh-TW", "zh"),
        ("", "en-US,en;q=0.9", "en"),
        ("", "fr-FR,zh;q=0.5", "zh"),  # the first language Parley speaks
        ("", "de-DE", "en"),
        ("", None, "en"),
        ("en", "zh-CN", "en"),  # a choice made in this browser wins
        ("zh", "en-US", "zh"),
        ("klingon", "en-US", "en"),  # a tampered stored value is ignored
    ],
)
def test_language_comes_from_the_choice_then_the_browser(
    stored: str, header: str | None, expected: str
) -> None:
    assert pick_language(stored, header) == expected


def test_every_fixed_text_of_the_page_has_a_chinese_translation(parley: Parley) -> None:
    texts = fixed_texts(parley.demo) - NOT_TRANSLATED - API_LABELS
    texts = {text for text in texts if re.search(r"[A-Za-z]", text)}  # not "◀", "2", "⟳"
    missing = sorted(text for text in texts if text not in ZH)
    assert not missing, f"add these to webapp/i18n.py ZH: {missing}"


def test_translations_keep_their_placeholders_and_markup() -> None:
    for english, chinese in ZH.items():
        placeholders = sorted(re.findall(r"{\w+}", english))
        assert placeholders == sorted(re.findall(r"{\w+}", chinese)), english
        assert english.count("**") == chinese.count("**"), english
        assert english.startswith("#") == chinese.startswith("#"), english
        assert chinese.strip() and chinese != english or english in ("Top-p", "Top-k", "Min-p")


def test_the_page_is_relabelled_and_choices_keep_their_values(parley: Parley) -> None:
    items = translate.collect(parley.demo)
    by_id = {item.component.elem_id: item for item in items}
    assert by_id["new-chat"].update("zh")["value"] == "+ 新对话"
    assert by_id["new-chat"].update("en")["value"] == "+ New chat"
    assert by_id["system-prompt"].update("zh")["label"] == "系统提示词"
    tool_choice = by_id["tool-choice"].update("zh")
    assert ("自动", "auto") in tool_choice["choices"]
    assert "required" in dict(tool_choice["choices"]).values()
    # The user's own values are never part of a relabel.
    assert all(
        "value" not in item.update("zh")
        or isinstance(item.component, gr.Button | gr.Markdown | gr.UploadButton)
        for item in items
    )


def test_loading_in_english_changes_nothing_and_chinese_relabels(parley: Parley) -> None:
    items = translate.collect(parley.demo)
    translations = translate.Translations(items)

    class Request:
        def __init__(self, language: str) -> None:
            self.headers = {"accept-language": language}

    state = SessionState()
    english = translations.on_load(Request("en-US"), state, "")  # type: ignore[arg-type]
    assert english[0] == "en" and state.lang == "en"
    assert all(update == gr.skip() for update in english[1:])
    chinese = translations.on_load(Request("zh-CN"), state, "")  # type: ignore[arg-type]
    assert chinese[0] == "zh" and state.lang == "zh"
    assert len(chinese) == len(items) + 1
    switched = translations.switch("en", state)
    assert switched[:2] == ["en", state] and state.lang == "en"


def test_figures_under_an_answer_follow_the_language() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 30, "reasoning_tokens": 5}
    timings = {"ttft_ms": 420, "tokens_per_s": 51.2}
    assert stats_line(usage, timings, "m", "en") == (
        "12 prompt · 30 completion · 5 reasoning tokens · first token 0.42 s · 51.2 tok/s · m"
    )
    assert stats_line(usage, timings, "m", "zh") == (
        "输入 12 · 输出 30 · 推理 5 token · 首 token 0.42 秒 · 51.2 token/秒 · m"
    )
    assert t("Thinking", "zh") == "思考" and t("Thinking", "en") == "Thinking"
    assert t("a sentence nobody translated", "zh") == "a sentence nobody translated"


def test_every_literal_text_given_to_t_has_a_chinese_translation() -> None:
    """A toast or note written as t("…") in the code is in the table (else it stays English)."""
    import ast
    from pathlib import Path

    missing = []
    for path in sorted(Path("webapp").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "t"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value not in ZH
            ):
                missing.append(f"{path}:{node.lineno}: {node.args[0].value}")
    assert missing == []


def test_what_the_server_writes_on_load_waits_for_the_language(parley: Parley) -> None:
    """The conversation named in the address, the model list and the banner are written after
    the page's language is known (on_load), or a Chinese page would show them in English
    until the next event."""
    fns = list(parley.demo.fns.values())

    def name(f: Any) -> str:
        return str(getattr(f.fn, "__name__", ""))  # "" for a partial or a lambda

    def after(first: Any) -> set[str]:
        return {name(f) for f in fns if f.trigger_after == first._id}

    on_load = next(f for f in fns if name(f) == "on_load")
    assert on_load.targets[0][1] == "load"
    assert {"open_from_url", "key_banner"} <= after(on_load)
    assert "models_for" not in after(on_load)  # it would reset an opened conversation's model
    opened = next(f for f in fns if name(f) == "open_from_url")
    assert {"models_on_load", "sidebar"} <= after(opened)
