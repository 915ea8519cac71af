"""A comparison as Markdown: every round's prompt, then each column's answer, thinking,
figures, and which answer was marked best. Pure; no I/O."""

from __future__ import annotations

import json

from storage.models import Conversation, Message
from storage.tree import active_path
from webapp.app.compare_rounds import LETTERS, Round, compare_rounds, figures_line
from webapp.app.error_text import user_message
from webapp.app.export import iso, strip_secrets
from webapp.core.markdown_text import answer_mark, quoted, thinking_details
from webapp.provider.pricing import PriceTable, format_cost


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _column_name(column: int, answer: Message) -> str:
    letter = LETTERS[column] if column < len(LETTERS) else str(column + 1)
    provider = f" ({_one_line(answer.provider)})" if answer.provider else ""
    return f"Column {letter} · {_one_line(answer.model) or 'unknown model'}{provider}"


def _answer(column: int, answer: Message, prices: PriceTable, *, compare: bool) -> list[str]:
    heading = f"### {_column_name(column, answer)}"
    if compare and answer.preferred:
        heading += " — ★ best"
    blocks = [heading]
    if answer.reasoning:
        blocks.append(thinking_details(answer.reasoning))
    if answer.content:
        blocks.append(answer.content)
    mark = answer_mark(answer.state, user_message(answer.error))
    if mark:
        blocks.append(quoted(mark))
    cost = format_cost(prices.cost(answer.provider, answer.model, answer.usage))
    blocks.append(f"<small>{figures_line(answer.usage, answer.timings, cost)}</small>")
    return blocks


def _round(number: int, round_: Round, prices: PriceTable) -> list[str]:
    title = f"## Round {number}" + ("" if round_.compare else " (one model)")
    blocks = [title, "**Prompt**", quoted(round_.user.content) or "> (empty)"]
    for column, answer in sorted(round_.answers.items()):
        blocks += _answer(column, answer, prices, compare=round_.compare)
    if round_.compare:
        best = round_.best
        if best is None:
            blocks.append("_No answer was marked best in this round._")
        else:
            blocks.append(f"**Best:** {_column_name(best.choice_index, best)}")
    return blocks


def compare_markdown(
    conversation: Conversation, messages: list[Message], prices: PriceTable | None = None
) -> str:
    """The comparison along its active path, every column of every round, as Markdown."""
    prices = prices or PriceTable()
    rounds = compare_rounds(active_path(messages, conversation.current_leaf_id), messages)
    blocks = [f"# {_one_line(conversation.title) or 'Untitled'}"]
    facts = []
    first = next((r for r in rounds if r.compare), None)
    if first is not None:
        facts.append(
            "**Comparison of:** "
            + ", ".join(f"{_one_line(spec.model)} ({spec.provider})" for spec in first.specs())
        )
    parameters = strip_secrets(conversation.parameters or {})
    if parameters:
        facts.append(
            "**Parameters:** "
            + ", ".join(
                f"{name}={json.dumps(value, ensure_ascii=False)}"
                for name, value in parameters.items()
            )
        )
    if created := iso(conversation.created_at):
        facts.append(f"**Created:** {created}")
    if facts:
        blocks.append("  \n".join(facts))
    if conversation.system_prompt.strip():
        blocks.append("> **System prompt**\n>\n" + quoted(conversation.system_prompt))
    for number, round_ in enumerate(rounds, 1):
        blocks += _round(number, round_, prices)
    return "\n\n".join(blocks) + "\n"
