"""A comparison's message tree read as rounds and columns. Pure; no I/O.

Storage: each round is one user message with one assistant row per column under it, all
sharing a batch_id, choice_index = column. The active path runs through the answer marked best
(or column 0). After "continue with one model" later rounds are ordinary single answers
(batch_id None, choice_index 0) that belong to the column the path continued from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from storage.models import Message
from storage.schemas import StoredTimings, StoredUsage
from webapp.app.chat import TurnRefused
from webapp.i18n import t

MIN_COLUMNS, MAX_COLUMNS = 2, 4
LETTERS = "ABCD"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """Who answers in one column: a configured provider's name and a model id."""

    provider: str
    model: str


class _Row(Protocol):
    provider: str
    model: str


@dataclass(slots=True)
class Round:
    """One prompt and the answers to it, by column."""

    user: Message
    answers: dict[int, Message] = field(default_factory=dict)  # column → answer
    compare: bool = False  # several columns answered together (False: one model)
    chosen: int = 0  # the column the active path continues from

    @property
    def best(self) -> Message | None:
        return next((m for m in self.answers.values() if m.preferred), None)

    def specs(self) -> list[ColumnSpec]:
        return [ColumnSpec(m.provider, m.model) for _, m in sorted(self.answers.items())]


def is_compare_batch(rows: Sequence[_Row]) -> bool:
    """Several answers made together by distinct models (n > 1 choices share one model)."""
    return len(rows) > 1 and len({(r.provider, r.model) for r in rows}) == len(rows)


def compare_rounds(path: Sequence[Message], messages: Sequence[Message]) -> list[Round]:
    """The rounds along an active path; `messages` supplies each round's other columns."""
    batches: dict[str, list[Message]] = {}
    for message in messages:
        if message.role == "assistant" and message.batch_id:
            batches.setdefault(message.batch_id, []).append(message)
    rounds: list[Round] = []
    follow = 0
    for message in path:
        if message.role == "user":
            rounds.append(Round(message, chosen=follow))
        elif message.role == "assistant" and rounds:
            batch = batches.get(message.batch_id or "", [])
            if is_compare_batch(batch):
                rounds[-1].answers = {row.choice_index: row for row in batch}
                rounds[-1].compare = True
                rounds[-1].chosen = follow = message.choice_index
            else:  # one model answers (the last row of a tool-using answer wins)
                rounds[-1].answers = {follow: message}
    return rounds


def column_history(rounds: Sequence[Round], column: int) -> list[Message]:
    """What one column's model has seen: each round's prompt and that column's own answer."""
    history: list[Message] = []
    for round_ in rounds:
        answer = round_.answers.get(column)
        if answer is not None:
            history += [round_.user, answer]
    return history


def following(rounds: Sequence[Round]) -> int | None:
    """The column a comparison continues with alone, once a single-model round exists."""
    seen_compare = False
    for round_ in rounds:
        seen_compare = seen_compare or round_.compare
        if seen_compare and not round_.compare and round_.answers:
            return round_.chosen
    return None


def last_compare(rounds: Sequence[Round]) -> Round | None:
    return next((r for r in reversed(rounds) if r.compare), None)


def continuation_columns(rounds: list[Round], specs: list[ColumnSpec]) -> list[int]:
    """The columns a next round in an existing comparison runs in; refuse a mismatch."""
    latest = last_compare(rounds)
    if latest is None:
        raise TurnRefused("That comparison has no compared round to continue.")
    stored = latest.specs()
    if len(specs) == 1:
        column = rounds[-1].chosen
        if specs[0] != stored[column]:
            raise TurnRefused("Choose that model under “Continue with” first.")
        return [column]
    if following(rounds) is not None:
        raise TurnRefused(
            "This comparison now continues with one model; start a new comparison to compare again."
        )
    if specs != stored:
        names = ", ".join(spec.model for spec in stored)
        raise TurnRefused(
            f"This comparison is between {names}; start a new comparison to compare other models."
        )
    return list(range(len(stored)))


def column_labels(
    models: Sequence[str], *, blind: bool, revealed: bool, lang: str = "en"
) -> list[str]:
    """Column headers: the model ids, or "Model A", "Model B"… in blind mode until a vote."""
    if blind and not revealed:
        return [
            t("Model {letter}", lang).format(letter=LETTERS[index]) for index in range(len(models))
        ]
    return list(models)


def figures_line(
    usage: StoredUsage | None, timings: StoredTimings | None, cost: str, lang: str = "en"
) -> str:
    """'first token 0.21 s · 48.9 tok/s · 12 prompt · 300 completion · 0 reasoning tokens ·
    cost ¥0.0012' (parts that are not known are left out; the cost may be "unknown")."""
    parts = []
    timings = timings or {}
    if isinstance(timings.get("ttft_ms"), int | float):
        parts.append(
            t("first token {seconds} s", lang).format(seconds=f"{timings['ttft_ms'] / 1000:.2f}")
        )
    if isinstance(timings.get("tokens_per_s"), int | float):
        approx = "≈" if timings.get("tokens_estimated") else ""
        parts.append(approx + t("{rate} tok/s", lang).format(rate=f"{timings['tokens_per_s']:g}"))
    if usage and usage.get("estimated"):
        if usage.get("prompt_tokens"):
            parts.append(t("≈{tokens} prompt", lang).format(tokens=usage["prompt_tokens"]))
        parts.append(
            t("≈{tokens} completion tokens (estimated)", lang).format(
                tokens=usage.get("completion_tokens") or 0
            )
        )
    elif usage:
        parts += [
            t("{tokens} prompt", lang).format(tokens=usage.get("prompt_tokens") or 0),
            t("{tokens} completion", lang).format(tokens=usage.get("completion_tokens") or 0),
            t("{tokens} reasoning tokens", lang).format(tokens=usage.get("reasoning_tokens") or 0),
        ]
    parts.append(t("cost {cost}", lang).format(cost=t(cost, lang)))
    return " · ".join(parts)
