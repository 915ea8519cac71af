"""The ONE table of request parameters.

UI controls (webapp/ui/controls.py), validation and the request body are all generated from
`PARAMS`. A value of None means "not set": the parameter is not sent at all.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from storage.field_limits import PARAMETERS_JSON_MAX, STOP, json_size, problem, shown
from webapp.core.capabilities import MAX_TOKENS_CEILING, Capabilities

Kind = Literal["float", "int", "bool", "stop", "json_object", "response_format"]


@dataclass(frozen=True, slots=True)
class Param:
    """One request parameter: its type, documented range and where it applies."""

    name: str
    label: str
    kind: Kind
    help: str
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False  # top_p and repetition_penalty must be > 0
    step: float | None = None
    advanced: bool = True
    capability: str | None = None  # a Capabilities field that must not be False
    requires: str | None = None  # another parameter that must be set to true
    provider_default: str = ""  # shown as the placeholder: what the provider does when unset
    warn_above: float | None = None
    providers: tuple[str, ...] = ()  # provider kinds that take it; empty means all


MAX_CHOICES = 8  # n: the pages set no maximum; every choice is a stored, rendered answer

PARAMS: tuple[Param, ...] = (
    Param(
        "temperature",
        "Temperature",
        "float",
        "Randomness: 0 is focused, 2 is wild.",
        0,
        2,
        step=0.05,
        advanced=False,
        provider_default="0.7 on SiliconFlow",
    ),
    Param(
        "top_p",
        "Top-p",
        "float",
        "Nucleus sampling: keep the smallest token set with this much probability.",
        0,
        1,
        min_exclusive=True,
        step=0.05,
        advanced=False,
        provider_default="0.7 on SiliconFlow",
    ),
    Param(
        "max_tokens",
        "Max tokens",
        "int",
        "Longest answer, in tokens.",
        1,
        MAX_TOKENS_CEILING,
        advanced=False,
        provider_default="4096",
        warn_above=16384,
    ),
    Param(
        "top_k",
        "Top-k",
        "int",
        "Sample only from the k likeliest tokens (-1: off).",
        -1,
        100,
        step=1,
        provider_default="50 on SiliconFlow",
    ),
    Param(
        "min_p",
        "Min-p",
        "float",
        "Drop tokens below this fraction of the top token's probability (Qwen3).",
        0,
        1,
        step=0.01,
        capability="min_p",
        provider_default="0.05",
    ),
    Param(
        "frequency_penalty",
        "Frequency penalty",
        "float",
        "Penalise tokens by how often they appeared.",
        -2,
        2,
        step=0.1,
        provider_default="0.5 on SiliconFlow",
    ),
    Param(
        "presence_penalty",
        "Presence penalty",
        "float",
        "Penalise tokens that appeared at all.",
        -2,
        2,
        step=0.1,
        provider_default="0",
    ),
    Param(
        "repetition_penalty",
        "Repetition penalty",
        "float",
        "Multiplicative penalty on repeats (1 = off).",
        0,
        2,
        min_exclusive=True,
        step=0.05,
        provider_default="1",
    ),
    Param(
        "n",
        "Choices (n)",
        "int",
        "How many answers to generate at once; you keep one.",
        1,
        MAX_CHOICES,
        step=1,
        provider_default="1",
    ),
    Param(
        "stop",
        "Stop sequences",
        "stop",
        "Up to 4 sequences, one per line; generation stops before them.",
        provider_default="none",
    ),
    Param(
        "seed",
        "Seed",
        "int",
        "Same seed and parameters: same answer, where supported.",
        provider_default="random",
    ),
    Param(
        "response_format",
        "Response format",
        "response_format",
        "text, json_object, or a JSON schema ({name, schema, strict}).",
        provider_default="text",
    ),
    Param(
        "enable_thinking",
        "Thinking",
        "bool",
        "Switch the model's reasoning on or off.",
        capability="thinking",
        advanced=False,
        provider_default="model default",
    ),
    Param(
        "thinking_budget",
        "Thinking budget",
        "int",
        "Most tokens the model may spend reasoning.",
        128,
        32768,
        step=128,
        capability="thinking_budget",
        provider_default="4096",
    ),
    Param(
        "separate_reasoning",
        "Separate reasoning",
        "bool",
        "jiekou.ai: move thinking into its own field.",
        provider_default="off",
        providers=("jiekou",),
    ),
    Param(
        "stream",
        "Stream",
        "bool",
        "Show the answer as it is generated; off waits for the "
        "whole answer (for servers that only return tool calls unstreamed).",
        provider_default="on",
    ),
    Param(
        "logprobs", "Log-probs", "bool", "Return token log-probabilities.", provider_default="off"
    ),
    Param(
        "top_logprobs",
        "Top log-probs",
        "int",
        "Alternatives per token (needs Log-probs).",
        0,
        20,
        step=1,
        requires="logprobs",
        provider_default="0",
    ),
    Param(
        "logit_bias",
        "Logit bias",
        "json_object",
        'JSON object of token id → bias, e.g. {"1234": -100}.',
        provider_default="none",
    ),
)

PARAMS_BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
JIEKOU_DEFAULT_MAX_TOKENS = 4096
SEED_RANGE = (-(2**63), 2**63 - 1)  # providers take a 64-bit integer; larger ones fail there
LOGIT_BIAS_RANGE = (-100, 100)
MAX_DEPTH = 64  # JSON nesting no parameter needs (a JSON schema included); deeper is refused
MAX_PARAMETERS_JSON = PARAMETERS_JSON_MAX  # all parameters of a turn, as JSON
LONG_NUMBER_DIGITS = 30  # longer whole numbers are outside every parameter's range
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


class ParamError(ValueError):
    """One or more parameter values are invalid; `errors` lists each, ready to show."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _range_text(p: Param) -> str:
    if p.maximum is None:
        return f"{'more than' if p.min_exclusive else 'at least'} {p.minimum:g}"
    if p.min_exclusive:
        return f"more than {p.minimum:g} and at most {p.maximum:g}"
    return f"between {p.minimum:g} and {p.maximum:g}"


def _number_text(number: float | int | str) -> str:
    """A number as a message shows it: "2.5", "1e+12", or "a 5,000-digit number"."""
    digits = str(number).strip().lstrip("+-")
    if isinstance(number, str) or (isinstance(number, int) and len(digits) > 15):
        return f"a {len(digits):,}-digit number"
    return f"{number:g}"


def _out_of_range(p: Param, number: float | int | str) -> str:
    if p.name == "seed":
        return (
            f"Seed must be between {SEED_RANGE[0]} and {SEED_RANGE[1]} (a 64-bit "
            f"integer; got {_number_text(number)})"
        )
    return f"{p.label} must be {_range_text(p)} (got {_number_text(number)})"


def _check_number(p: Param, value: Any) -> tuple[float | int | None, str | None]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None, f"{p.label} must be a number, not {type(value).__name__}"
    kind = "a whole number" if p.kind == "int" else "a number"
    if p.kind == "int" and isinstance(value, float):
        # A JSON client may send 4096.0: a whole number, though typed as a float.
        if not math.isfinite(value) or not value.is_integer():
            return None, f"{p.label} must be a whole number, got {value!r}"
        value = int(value)
    if (
        isinstance(value, str)
        and _WHOLE_NUMBER.fullmatch(text := value.strip())
        and len(text) > LONG_NUMBER_DIGITS
    ):
        # Outside every range; int() would refuse it past 4,300 digits with Python's own text.
        return None, _out_of_range(p, text)
    try:
        number: float | int = float(value) if p.kind == "float" else int(str(value).strip())
    except OverflowError:  # a whole number too large for a float
        return None, _out_of_range(p, value)
    except ValueError:
        return None, f"{p.label} must be {kind}, got {shown(value, 40)}"
    if isinstance(number, float) and not math.isfinite(number):  # NaN passes every range check
        return None, f"{p.label} must be {kind}, got {shown(value, 40)}"
    if p.minimum is not None:
        too_low = number <= p.minimum if p.min_exclusive else number < p.minimum
        too_high = p.maximum is not None and number > p.maximum
        if too_low or too_high:
            return None, _out_of_range(p, number)
    if p.name == "top_k" and number == 0:
        return None, "Top-k must be -1 (off) or between 1 and 100 (got 0)"
    if p.name == "seed" and not SEED_RANGE[0] <= number <= SEED_RANGE[1]:
        return None, _out_of_range(p, number)
    return number, None


def json_int(text: str) -> int | str:
    """`json.loads`' parse_int: a whole number too long for int() stays as its digits, so the
    parameter check can say which range it is out of (not "Exceeds the limit (4300 digits)")."""
    return int(text) if len(text) <= 4000 else text


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and objects nest more than `limit` levels deep (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


def parse_params_json(
    text: str, label: str, example: str = '{"temperature": 0.5}'
) -> dict[str, Any]:
    """Request parameters typed as a JSON object (the Gradio API's parameters_json) → raw
    values for `normalize`; ParamError names `label` and the fault. Empty text is none."""
    if not text.strip():
        return {}
    if len(text) > MAX_PARAMETERS_JSON:
        raise ParamError([f"{label} is larger than {MAX_PARAMETERS_JSON:,} characters"])
    deep = f"{label} nests more than {MAX_DEPTH} levels deep; no parameter needs that"
    try:
        params = json.loads(text, parse_int=json_int)
    except json.JSONDecodeError as exc:
        raise ParamError([f"{label} is not valid JSON: {exc.msg} at column {exc.colno}"]) from None
    except RecursionError:
        raise ParamError([deep]) from None
    if not isinstance(params, dict):
        raise ParamError([f"{label} must be a JSON object, e.g. {example}"])
    nested = [name for name, value in params.items() if too_deep(value, MAX_DEPTH - 1)]
    if nested:
        raise ParamError([f"{deep} (in {json.dumps(nested[0])[:80]})"])
    return params


def _too_deep_error(p: Param) -> str:
    return f"{p.label} nests more than {MAX_DEPTH} levels deep"


def _check_logit_bias(p: Param, value: dict[str, Any]) -> str | None:
    low, high = LOGIT_BIAS_RANGE
    for token, bias in value.items():
        number = isinstance(bias, int | float) and not isinstance(bias, bool)
        if not (token.isascii() and token.isdigit()) or not number or not low <= bias <= high:
            return (
                f"{p.label} must map token ids to numbers between {low} and {high}, e.g. "
                f'{{"1234": -100}} (got {json.dumps(token)}: {_short(bias)})'
            )
    return None


def _short(value: Any) -> str:
    text = json.dumps(value) if not too_deep(value, 3) else "{…}"
    return text if len(text) <= 40 else text[:39] + "…"


def _check_stop(value: Any) -> tuple[list[str] | None, str | None]:
    items = value.splitlines() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        return None, "Stop sequences must be text, one sequence per line"
    # Keep sequences exact (a newline or a leading space can be a real stop sequence in a
    # list), but a line typed in the UI has no meaning when empty.
    items = [s for s in items if s != ""]
    if len(items) > 4:
        return None, f"At most 4 stop sequences are allowed (got {len(items)})"
    for item in items:
        if found := problem(STOP, item):
            return None, f"{STOP.label} {found}"
    return (items or None), None


def _too_long_error(p: Param, text: str) -> str | None:
    if len(text) > MAX_PARAMETERS_JSON:
        return (
            f"{p.label} is {len(text):,} characters; the limit is {MAX_PARAMETERS_JSON:,} "
            "for all parameters together"
        )
    return None


def _check_json_object(p: Param, value: Any) -> tuple[dict[str, Any] | None, str | None]:
    if isinstance(value, str):
        if not value.strip():
            return None, None
        if error := _too_long_error(p, value):
            return None, error
        try:
            value = json.loads(value, parse_int=json_int)
        except json.JSONDecodeError as exc:
            return None, f"{p.label} is not valid JSON: {exc.msg} at line {exc.lineno}"
        except RecursionError:
            return None, _too_deep_error(p)
    if not isinstance(value, dict):
        return None, f"{p.label} must be a JSON object"
    if too_deep(value):
        return None, _too_deep_error(p)
    if p.name == "logit_bias":
        return (None, error) if (error := _check_logit_bias(p, value)) else (value, None)
    return value, None


def _check_response_format(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    if isinstance(value, str):
        text = value.strip()
        if text in RESPONSE_FORMATS[:2]:
            return {"type": text}, None
        if not text:
            return None, None
        if error := _too_long_error(PARAMS_BY_NAME["response_format"], text):
            return None, error
        try:
            value = json.loads(text, parse_int=json_int)
        except json.JSONDecodeError:
            return None, (
                "Response format must be text, json_object, or a JSON schema object "
                '{"name": ..., "schema": {...}}'
            )
        except RecursionError:
            return None, _too_deep_error(PARAMS_BY_NAME["response_format"])
    if not isinstance(value, dict):
        return None, "Response format must be text, json_object, or a JSON object"
    if too_deep(value):
        return None, _too_deep_error(PARAMS_BY_NAME["response_format"])
    if value.get("type") in RESPONSE_FORMATS[:2]:
        return {"type": value["type"]}, None
    schema = value.get("json_schema", value) if value.get("type") == "json_schema" else value
    if (
        not isinstance(schema, dict)
        or not isinstance(schema.get("schema"), dict)
        or not schema.get("name")
    ):
        return None, 'A JSON schema response format needs "name" and an object "schema"'
    return {"type": "json_schema", "json_schema": schema}, None


def _check_bool(p: Param, value: Any) -> tuple[bool | None, str | None]:
    if isinstance(value, bool):
        return value, None
    if isinstance(value, str) and value.lower() in ("true", "on", "yes", "1"):
        return True, None
    if isinstance(value, str) and value.lower() in ("false", "off", "no", "0"):
        return False, None
    return None, f"{p.label} must be true or false, got {value!r}"


def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "default"))


def normalize(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate raw values (from the UI or the API) into typed values; raise ParamError.

    Unknown names are refused, so a typo is not silently ignored.
    """
    errors: list[str] = []
    clean: dict[str, Any] = {}
    for name, raw in values.items():
        p = PARAMS_BY_NAME.get(name)
        if p is None:
            errors.append(f"Unknown parameter {shown(name)}; known: {', '.join(PARAMS_BY_NAME)}")
            continue
        if _is_unset(raw):
            continue
        value: Any
        if p.kind in ("float", "int"):
            value, error = _check_number(p, raw)
        elif p.kind == "bool":
            value, error = _check_bool(p, raw)
        elif p.kind == "stop":
            value, error = _check_stop(raw)
        elif p.kind == "json_object":
            value, error = _check_json_object(p, raw)
        else:
            value, error = _check_response_format(raw)
        if error:
            errors.append(error)
        elif value is not None:
            clean[name] = value
    if "top_logprobs" in clean and clean.get("logprobs") is not True:
        errors.append("Top log-probs needs Log-probs switched on")
    if not errors and (size := json_size(clean)) > MAX_PARAMETERS_JSON:
        errors.append(
            f"The parameters are {size:,} characters as JSON; the limit is "
            f"{MAX_PARAMETERS_JSON:,}: shorten the response format or logit bias"
        )
    if errors:
        raise ParamError(errors)
    return clean


def warnings_for(clean: Mapping[str, Any]) -> list[str]:
    """Soft warnings for valid but suspicious values."""
    notes = []
    for name, value in clean.items():
        p = PARAMS_BY_NAME[name]
        if p.warn_above is not None and value > p.warn_above:
            notes.append(
                f"{p.label} {value} is above {p.warn_above:g}: most models' context "
                "window is smaller; the provider may refuse it"
            )
    return notes


def applies(p: Param, caps: Capabilities, provider_kind: str) -> bool:
    """Whether a parameter may be sent for this model and provider (unknown means yes)."""
    if p.providers and provider_kind not in p.providers:
        return False
    if p.capability is None:
        return True
    return getattr(caps, p.capability) is not False


def request_params(
    clean: Mapping[str, Any], caps: Capabilities, provider_kind: str, *, tools_sent: bool = False
) -> dict[str, Any]:
    """The parameters to put in the request body: only set ones the model accepts."""
    body = {n: v for n, v in clean.items() if applies(PARAMS_BY_NAME[n], caps, provider_kind)}
    limit = caps.max_output_tokens
    if limit is not None and body.get("max_tokens", 0) > limit:
        raise ParamError(
            [
                f"Max tokens must be at most {limit} for this model (its output "
                f"limit, max_output_tokens in CAPABILITIES_FILE; got "
                f"{body['max_tokens']})"
            ]
        )
    if provider_kind == "jiekou" and "max_tokens" not in body:
        body["max_tokens"] = min(JIEKOU_DEFAULT_MAX_TOKENS, limit or JIEKOU_DEFAULT_MAX_TOKENS)
    if tools_sent and caps.tools_need_thinking_off:
        body["enable_thinking"] = False
    return body
