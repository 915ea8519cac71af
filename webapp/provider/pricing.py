"""Per-model prices from a JSON file (PRICES_FILE), and what an answer cost. Pure but for
reading the file once at start-up.

The file is a JSON list of entries::

    [{"match": "Qwen/Qwen3-8B", "provider": "siliconflow", "input": 0, "output": 0,
      "currency": "CNY"},
     {"match": "deepseek/.*", "input": 2, "output": 8, "currency": "CNY"}]

`match` is an exact model id or a regular expression over the whole id (case-insensitive);
`provider` (optional) limits the entry to one provider name; `input` and `output` are prices
per million prompt and completion tokens. Reasoning tokens are billed as output: OpenAI-style
usage counts them inside `completion_tokens`. An exact id beats a pattern, and an entry naming
the provider beats one that does not; among equals the first in the file wins.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYMBOLS = {"CNY": "¥", "RMB": "¥", "USD": "$", "EUR": "€", "GBP": "£"}
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_KEYS = frozenset({"match", "provider", "input", "output", "currency"})
PER_TOKENS = 1_000_000


class PriceFileError(ValueError):
    """The prices file is unreadable or malformed; the message says where and how to fix it."""


@dataclass(frozen=True, slots=True)
class Price:
    """One entry of the prices file."""

    match: str
    input: float  # per million prompt tokens
    output: float  # per million completion tokens (reasoning included)
    currency: str
    provider: str = ""

    def matches(self, provider: str, model: str) -> tuple[bool, bool]:
        """(matches at all, matches exactly) for a provider name and model id."""
        if self.provider and self.provider != provider:
            return False, False
        if model == self.match:
            return True, True
        try:
            return re.fullmatch(self.match, model, re.IGNORECASE) is not None, False
        except re.error:  # checked at load time; a hand-built Price may still be wrong
            return False, False


@dataclass(frozen=True, slots=True)
class Cost:
    """What one answer cost, in one currency."""

    amount: float
    currency: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


def format_cost(cost: Cost | None) -> str:
    """ "¥0.0123", "$0.0004", "<$0.0001", "$0"; "unknown" when no price applies."""
    if cost is None:
        return "unknown"
    symbol = SYMBOLS.get(cost.currency)
    prefix, suffix = (symbol, "") if symbol else ("", f" {cost.currency}")
    if cost.amount == 0:
        return f"{prefix}0{suffix}"
    if cost.amount < 0.0001:
        return f"<{prefix}0.0001{suffix}"
    return f"{prefix}{cost.amount:.4f}{suffix}"


class PriceTable:
    """Looks up the price of a provider's model and computes an answer's cost."""

    def __init__(self, prices: tuple[Price, ...] = ()) -> None:
        self.prices = prices

    def __len__(self) -> int:
        return len(self.prices)

    def price(self, provider: str, model: str) -> Price | None:
        best: tuple[bool, bool] | None = None
        found = None
        for price in self.prices:
            hit, exact = price.matches(provider, model)
            rank = (exact, bool(price.provider))
            if hit and (best is None or rank > best):
                best, found = rank, price
        return found

    def cost(self, provider: str, model: str, usage: Mapping[str, Any] | None) -> Cost | None:
        """The cost of one answer from its usage; None when unknown (no usage, or only an
        estimate, or no price)."""
        price = self.price(provider, model)
        if price is None or not usage or usage.get("estimated"):
            return None  # an estimate is no bill: the provider's own count is unknown
        prompt = _count(usage.get("prompt_tokens"))
        completion = _count(usage.get("completion_tokens"))
        # Some servers report reasoning outside completion_tokens: bill the larger figure.
        completion = max(completion, _count(usage.get("reasoning_tokens")))
        amount = (prompt * price.input + completion * price.output) / PER_TOKENS
        return Cost(amount, price.currency, prompt, completion)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _where(path: str, number: int | None = None) -> str:
    return f"PRICES_FILE {path}" + (f" entry {number}" if number is not None else "")


def _number(item: Mapping[str, Any], key: str, where: str) -> float:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PriceFileError(
            f'{where}: "{key}" must be a number (price per 1M tokens), not {value!r}'
        )
    if value < 0:
        raise PriceFileError(f'{where}: "{key}" must not be negative (got {value:g})')
    return float(value)


def parse_prices(raw: Any, path: str = "(inline)") -> PriceTable:
    """Validate parsed JSON into a PriceTable; raise PriceFileError naming the bad entry."""
    if not isinstance(raw, list):
        raise PriceFileError(
            f'{_where(path)} must be a JSON list of {{"match", "input", '
            '"output", "currency"}} objects'
        )
    prices = []
    for number, item in enumerate(raw, 1):
        where = _where(path, number)
        if not isinstance(item, dict):
            raise PriceFileError(f"{where} must be an object, not {type(item).__name__}")
        unknown = set(item) - _KEYS
        if unknown:
            raise PriceFileError(
                f"{where} has unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}"
            )
        match = item.get("match")
        if not isinstance(match, str) or not match.strip():
            raise PriceFileError(f'{where} needs "match": a model id or a regular expression')
        try:
            re.compile(match)
        except re.error as exc:
            raise PriceFileError(
                f'{where}: "match" is not a valid regular expression: {exc}'
            ) from None
        provider = item.get("provider", "")
        if not isinstance(provider, str):
            raise PriceFileError(f'{where}: "provider" must be a provider name')
        currency = item.get("currency")
        if not isinstance(currency, str) or not _CURRENCY_RE.match(currency.strip().upper()):
            raise PriceFileError(
                f'{where}: "currency" must be a 3-letter code such as "CNY" '
                f'or "USD", not {currency!r}'
            )
        prices.append(
            Price(
                match,
                _number(item, "input", where),
                _number(item, "output", where),
                currency.strip().upper(),
                provider.strip().lower(),
            )
        )
    return PriceTable(tuple(prices))


def load_prices(path: str) -> PriceTable:
    """Read the prices file; an empty path gives an empty table (every cost "unknown")."""
    if not path:
        return PriceTable()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceFileError(f"Cannot read {_where(path)}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PriceFileError(f"{_where(path)} is not UTF-8 text: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PriceFileError(
            f"{_where(path)} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    return parse_prices(raw, path)
