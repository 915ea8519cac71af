"""Per-model capabilities: which optional parameters and inputs a model takes.

Seeded from the providers' pages (see shared NOTES.md) and overridable by a JSON file named in
CAPABILITIES_FILE. Each capability is True, False, or None (unknown: allowed, and the provider's
own error is shown if it refuses); `max_output_tokens` is a number of tokens or None.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

# The most max_tokens Parley sends to any model: no model the providers list writes a longer
# answer; a model's own, smaller limit can be set as max_output_tokens in CAPABILITIES_FILE.
MAX_TOKENS_CEILING = 131_072
MAX_CONTEXT_TOKENS = 10_000_000  # a context_tokens override above this is a typo


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one model accepts."""

    thinking: bool | None = None  # enable_thinking
    thinking_budget: bool | None = None
    min_p: bool | None = None
    vision: bool | None = None  # image parts
    video: bool | None = None  # video_url parts
    tools: bool | None = None
    tools_need_thinking_off: bool = False  # DeepSeek-V3.1: tools require enable_thinking=false
    reasoning_passback: bool = False  # send reasoning back on tool-call turns (DeepSeek, Kimi)
    max_output_tokens: int | None = None  # the longest answer it writes; None: the ceiling
    context_tokens: int | None = None  # its context window (prompt and answer); None: unknown


@dataclass(frozen=True, slots=True)
class Rule:
    """Capabilities set for models whose id matches `pattern` (case-insensitive search)."""

    pattern: str
    values: dict[str, Any]
    provider: str = ""  # a provider kind or name; empty means any


# SiliconFlow's current page lists exactly these models as taking enable_thinking.
_THINKING_SWITCH = (
    r"Qwen/Qwen3-(8B|14B|32B|30B-A3B|235B-A22B)$|Hunyuan-A13B-Instruct|GLM-5V-Turbo|GLM-4\.6V"
    r"|GLM-4\.5V|DeepSeek-V3\.1$|DeepSeek-V3\.1-Terminus|DeepSeek-V3\.2"
)
_REASONING = r"DeepSeek-R1|Thinking|QwQ|GLM-Z1|Ring-|gpt-oss|" + _THINKING_SWITCH
_VISION = r"-VL|VL2|Omni|GLM-[0-9.]+V(-|$)|GLM-5V|vision|llava|gemma-[34]"
_VIDEO = r"Qwen2\.5-VL|Qwen3-VL|Omni|GLM-4\.[56]V|GLM-5V"
# Well-known text-only families: attachments are refused up front instead of failing upstream.
# Vision variants of these (Qwen2.5-VL, GLM-4.5V, DeepSeek-VL2, …) match _VISION below and win.
_TEXT_ONLY = (
    r"DeepSeek-(V[23]|R1)|Qwen[23](\.5)?-[0-9]|Qwen3-(Coder|Next)|QwQ|Kimi-K2|GLM-(4|Z1)"
    r"|MiniMax-M|gpt-oss|Hunyuan-A13B|ERNIE-4\.5-300B|Ling-|Ring-|Llama-3|Mistral-7B"
)

SEED_RULES: tuple[Rule, ...] = (
    # Order matters: later rules override earlier ones for the fields they set.
    Rule(r".", {"thinking": False, "thinking_budget": False, "min_p": False}, "siliconflow"),
    Rule(_THINKING_SWITCH, {"thinking": True}, "siliconflow"),
    Rule(_REASONING, {"thinking_budget": True}, "siliconflow"),
    Rule(r"Qwen3", {"min_p": True}, "siliconflow"),
    Rule(r"Qwen3", {"min_p": True}),
    Rule(_TEXT_ONLY, {"vision": False, "video": False}),
    Rule(_VISION, {"vision": True, "video": None}),
    Rule(_VIDEO, {"video": True}),
    Rule(r"DeepSeek-V3\.1", {"tools_need_thinking_off": True}),
    Rule(r"deepseek|kimi.*thinking", {"reasoning_passback": True}),
    # Context windows as the providers' model pages list them (GET /models gives none on
    # SiliconFlow); a server's own /models figure (vLLM max_model_len, …) wins over these.
    Rule(r"Qwen2\.5|QwQ|GLM-Z1|Mistral-7B", {"context_tokens": 32_768}),
    Rule(
        r"Qwen3|Qwen2\.5-.*-128K|DeepSeek-(V3|R1)|Kimi-K2|GLM-4\.5|gpt-oss|Llama-3\.[1-3]",
        {"context_tokens": 131_072},
    ),
    Rule(r"GLM-4\.6|GLM-5|MiniMax-M[12]", {"context_tokens": 196_608}),
    Rule(r"Kimi-K2-(Instruct-0905|Thinking)", {"context_tokens": 262_144}),
    Rule(r"Llama-3-", {"context_tokens": 8_192}),
)


class CapabilityFileError(ValueError):
    """The capabilities override file is malformed."""


def load_rules(path: str) -> tuple[Rule, ...]:
    """Read override rules: a JSON list of {"match": regex, "provider"?: str, <capability>: v}.

    Long: one check per field of a rule, each refusal naming the rule and the field."""
    if not path:
        return ()
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CapabilityFileError(f"Cannot read CAPABILITIES_FILE {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise CapabilityFileError(f"CAPABILITIES_FILE {path} is not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise CapabilityFileError(
            f"CAPABILITIES_FILE {path} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from exc
    if not isinstance(raw, list):
        raise CapabilityFileError(f"CAPABILITIES_FILE {path} must hold a JSON list of rules")
    known = {f.name for f in fields(Capabilities)}
    rules = []
    for number, item in enumerate(raw, 1):
        if not isinstance(item, dict) or not isinstance(item.get("match"), str):
            raise CapabilityFileError(f'CAPABILITIES_FILE rule {number} needs a "match" regex')
        values = {k: v for k, v in item.items() if k not in ("match", "provider")}
        unknown = set(values) - known
        if unknown:
            raise CapabilityFileError(
                f"CAPABILITIES_FILE rule {number} names unknown capabilities {sorted(unknown)}; "
                f"known: {sorted(known)}"
            )
        context = values.pop("context_tokens", None)
        tokens = values.pop("max_output_tokens", None)
        # Not `v in (True, False, None)`: 1 == True and 0 == False would slip through.
        if any(v is not None and not isinstance(v, bool) for v in values.values()):
            raise CapabilityFileError(f"CAPABILITIES_FILE rule {number}: use true, false or null")
        if "context_tokens" in item:
            if context is not None and (
                type(context) is not int or not 256 <= context <= MAX_CONTEXT_TOKENS
            ):
                raise CapabilityFileError(
                    f"CAPABILITIES_FILE rule {number}: context_tokens must be a whole number "
                    f"from 256 to {MAX_CONTEXT_TOKENS} (or null)"
                )
            values["context_tokens"] = context
        if "max_output_tokens" in item:
            if tokens is not None and (
                type(tokens) is not int or not 1 <= tokens <= MAX_TOKENS_CEILING
            ):
                raise CapabilityFileError(
                    f"CAPABILITIES_FILE rule {number}: max_output_tokens must be a whole number "
                    f"from 1 to {MAX_TOKENS_CEILING} (or null)"
                )
            values["max_output_tokens"] = tokens
        try:
            re.compile(item["match"])
        except re.error as exc:
            raise CapabilityFileError(f"CAPABILITIES_FILE rule {number}: bad regex: {exc}") from exc
        provider = item.get("provider", "")
        if not isinstance(provider, str):
            raise CapabilityFileError(
                f'CAPABILITIES_FILE rule {number}: "provider" must be a provider name'
            )
        rules.append(Rule(item["match"], values, provider))
    return tuple(rules)


class CapabilityTable:
    """Looks up a model's capabilities from seed rules plus overrides (overrides win)."""

    def __init__(self, overrides: tuple[Rule, ...] = ()) -> None:
        self._rules = SEED_RULES + overrides

    def lookup(self, model: str, provider_kind: str = "", provider_name: str = "") -> Capabilities:
        caps = Capabilities()
        for rule in self._rules:
            if rule.provider and rule.provider not in (provider_kind, provider_name):
                continue
            if re.search(rule.pattern, model, re.IGNORECASE):
                caps = replace(caps, **rule.values)
        return caps
