"""Per-model capabilities: the seeded table and the override file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webapp.core.capabilities import (
    Capabilities,
    CapabilityFileError,
    CapabilityTable,
    Rule,
    load_rules,
)

TABLE = CapabilityTable()


def sf(model: str) -> Capabilities:
    return TABLE.lookup(model, "siliconflow", "siliconflow")


# --- SiliconFlow's enable_thinking list ---------------------------------------------------

THINKING_SWITCH = [
    "Qwen/Qwen3-8B",
    "Qwen/Qwen3-14B",
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-235B-A22B",
    "tencent/Hunyuan-A13B-Instruct",
    "zai-org/GLM-5V-Turbo",
    "zai-org/GLM-4.6V",
    "zai-org/GLM-4.5V",
    "deepseek-ai/DeepSeek-V3.1",
    "Pro/deepseek-ai/DeepSeek-V3.1",
    "deepseek-ai/DeepSeek-V3.1-Terminus",
    "deepseek-ai/DeepSeek-V3.2",
    "deepseek-ai/DeepSeek-V3.2-Exp",
]


@pytest.mark.parametrize("model", THINKING_SWITCH)
def test_listed_siliconflow_models_take_enable_thinking_and_a_budget(model: str) -> None:
    caps = sf(model)
    assert caps.thinking is True
    assert caps.thinking_budget is True


NOT_SWITCHABLE = [
    "Qwen/Qwen2.5-72B-Instruct",
    "Qwen/Qwen3-235B-A22B-Instruct-2507",  # the 2507 releases are not on the list
    "Qwen/Qwen3-30B-A3B-Instruct-2507",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct",
    "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1",
    "moonshotai/Kimi-K2-Instruct-0905",
    "zai-org/GLM-4.6",
]


@pytest.mark.parametrize("model", NOT_SWITCHABLE)
def test_other_siliconflow_models_do_not_take_enable_thinking(model: str) -> None:
    assert sf(model).thinking is False


REASONING_ONLY = [
    "deepseek-ai/DeepSeek-R1",
    "Qwen/QwQ-32B",
    "Qwen/Qwen3-235B-A22B-Thinking-2507",
    "moonshotai/Kimi-K2-Thinking",
    "THUDM/GLM-Z1-32B-0414",
    "inclusionAI/Ring-flash-2.0",
    "openai/gpt-oss-120b",
]


@pytest.mark.parametrize("model", REASONING_ONLY)
def test_reasoning_models_take_a_thinking_budget(model: str) -> None:
    caps = sf(model)
    assert caps.thinking_budget is True
    assert caps.thinking is False


@pytest.mark.parametrize(
    "model", ["Qwen/Qwen2.5-72B-Instruct", "deepseek-ai/DeepSeek-V3", "zai-org/GLM-4.6"]
)
def test_non_reasoning_models_take_no_thinking_budget(model: str) -> None:
    assert sf(model).thinking_budget is False


def test_min_p_is_for_qwen3_only_on_siliconflow() -> None:
    assert sf("Qwen/Qwen3-32B").min_p is True
    assert sf("Qwen/Qwen3-Coder-480B-A35B-Instruct").min_p is True
    assert sf("Qwen/Qwen2.5-72B-Instruct").min_p is False
    assert sf("deepseek-ai/DeepSeek-V3.2").min_p is False


def test_qwen3_takes_min_p_on_any_provider() -> None:
    assert TABLE.lookup("qwen/qwen3-32b", "jiekou", "jiekou").min_p is True
    assert TABLE.lookup("qwen3:8b", "openai", "local").min_p is True


# --- vision by name -----------------------------------------------------------------------

VISION = [
    "Qwen/Qwen2.5-VL-7B-Instruct",
    "Qwen/Qwen3-VL-235B-A22B-Instruct",
    "deepseek-ai/deepseek-vl2",
    "zai-org/GLM-4.5V",
    "zai-org/GLM-4.6V",
    "THUDM/GLM-4.1V-9B-Thinking",
    "zai-org/GLM-5V-Turbo",
    "Qwen/Qwen2.5-Omni-7B",
    "Qwen/Qwen3-Omni-30B-A3B-Instruct",
]


@pytest.mark.parametrize("model", VISION)
@pytest.mark.parametrize("kind", ["siliconflow", "jiekou", "openai"])
def test_vision_by_name_convention(model: str, kind: str) -> None:
    assert TABLE.lookup(model, kind, kind).vision is True


@pytest.mark.parametrize(
    "model",
    [
        "Qwen/Qwen3-32B",
        "zai-org/GLM-4.6",
        "deepseek-ai/DeepSeek-V3",
        "moonshotai/Kimi-K2-Instruct",
        "Qwen/Qwen2.5-72B-Instruct",
    ],
)
def test_known_text_only_families_take_no_images_or_video(model: str) -> None:
    caps = sf(model)
    assert (caps.vision, caps.video) == (False, False)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "my-local-model", "llama3.2"])
def test_other_names_are_unknown_so_images_are_allowed(model: str) -> None:
    assert sf(model).vision is None


@pytest.mark.parametrize(
    "model",
    [
        "Qwen/Qwen2.5-VL-72B-Instruct",
        "Qwen/Qwen3-VL-8B-Instruct",
        "zai-org/GLM-4.5V",
        "Qwen/Qwen2.5-Omni-7B",
    ],
)
def test_video_models_by_name(model: str) -> None:
    assert sf(model).video is True


def test_a_vision_variant_of_a_text_family_takes_images() -> None:
    caps = sf("THUDM/GLM-4.1V-9B-Thinking")  # "GLM-4" is text-only; the V variant is not
    assert (caps.vision, caps.video) == (True, None)


# --- tools and reasoning passback ---------------------------------------------------------


def test_deepseek_v31_tools_need_thinking_off() -> None:
    assert sf("deepseek-ai/DeepSeek-V3.1").tools_need_thinking_off is True
    assert sf("Pro/deepseek-ai/DeepSeek-V3.1-Terminus").tools_need_thinking_off is True
    assert sf("deepseek-ai/DeepSeek-V3.2").tools_need_thinking_off is False
    assert sf("Qwen/Qwen3-8B").tools_need_thinking_off is False


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("deepseek-ai/DeepSeek-R1", True),
        ("deepseek-ai/DeepSeek-V3.2", True),
        ("deepseek/deepseek-v3.2", True),
        ("moonshotai/Kimi-K2-Thinking", True),
        ("moonshotai/kimi-k2-thinking", True),
        ("moonshotai/Kimi-K2-Instruct-0905", False),
        ("Qwen/Qwen3-32B", False),
        ("zai-org/GLM-4.6", False),
    ],
)
def test_reasoning_passback(model: str, expected: bool) -> None:
    assert sf(model).reasoning_passback is expected


def test_tools_are_unknown_everywhere_by_default() -> None:
    assert sf("Qwen/Qwen3-32B").tools is None


# --- unknown providers --------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o", "llama3.1:8b", "mistral-large-latest"])
def test_unknown_provider_models_are_unknown(model: str) -> None:
    assert TABLE.lookup(model, "openai", "local") == Capabilities()
    assert TABLE.lookup(model) == Capabilities()


def test_siliconflow_seeds_do_not_apply_to_other_providers() -> None:
    caps = TABLE.lookup("Qwen/Qwen2.5-72B-Instruct", "openai", "local")
    assert (caps.thinking, caps.thinking_budget, caps.min_p) == (None, None, None)
    caps = TABLE.lookup("deepseek/deepseek-r1", "jiekou", "jiekou")
    assert (caps.thinking, caps.thinking_budget) == (None, None)


# --- override file ------------------------------------------------------------------------


def write(tmp_path: Path, content: Any) -> str:
    path = tmp_path / "capabilities.json"
    text = content if isinstance(content, str) else json.dumps(content)
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_no_file_means_no_rules() -> None:
    assert load_rules("") == ()


def test_valid_rules_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            {"match": "my-model", "tools": True, "vision": None},
            {"match": "Qwen2\\.5", "provider": "siliconflow", "thinking": True},
        ],
    )
    assert load_rules(path) == (
        Rule("my-model", {"tools": True, "vision": None}, ""),
        Rule("Qwen2\\.5", {"thinking": True}, "siliconflow"),
    )


def test_overrides_win_over_seeds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            {"match": "Qwen2\\.5-72B", "provider": "siliconflow", "thinking": True, "min_p": None},
            {"match": "Qwen2\\.5-VL", "vision": False, "tools": True},
            {"match": "DeepSeek-V3\\.1", "tools_need_thinking_off": False},
        ],
    )
    table = CapabilityTable(load_rules(path))
    caps = table.lookup("Qwen/Qwen2.5-72B-Instruct", "siliconflow", "siliconflow")
    assert caps.thinking is True
    assert caps.min_p is None
    assert caps.thinking_budget is False  # seeds still apply where not overridden
    vl = table.lookup("Qwen/Qwen2.5-VL-7B-Instruct", "siliconflow", "siliconflow")
    assert (vl.vision, vl.tools) == (False, True)
    v31 = table.lookup("deepseek-ai/DeepSeek-V3.1", "siliconflow", "siliconflow")
    assert v31.tools_need_thinking_off is False
    # A provider-scoped override does not leak to other providers.
    other = table.lookup("Qwen/Qwen2.5-72B-Instruct", "openai", "local")
    assert other.thinking is None


def test_override_matching_by_provider_name(tmp_path: Path) -> None:
    path = write(tmp_path, [{"match": ".", "provider": "local", "tools": False}])
    table = CapabilityTable(load_rules(path))
    assert table.lookup("llama3", "openai", "local").tools is False
    assert table.lookup("llama3", "openai", "other").tools is None


def test_override_match_is_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, [{"match": "MY-MODEL", "vision": True}])
    assert CapabilityTable(load_rules(path)).lookup("org/my-model-7b").vision is True


def raises(path: str) -> str:
    with pytest.raises(CapabilityFileError) as info:
        load_rules(path)
    return str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.json")
    message = raises(path)
    assert message.startswith(f"Cannot read CAPABILITIES_FILE {path}")
    assert "No such file" in message


def test_bad_json(tmp_path: Path) -> None:
    path = write(tmp_path, '[{"match": "x",]')
    assert raises(path).startswith(f"CAPABILITIES_FILE {path} is not valid JSON: ")
    assert "at line 1" in raises(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "capabilities.json"
    path.write_bytes(b'[{"match": "\xff"}]')
    assert raises(str(path)).startswith(f"CAPABILITIES_FILE {path} is not UTF-8 text")


@pytest.mark.parametrize("content", [{"match": "x"}, "x", 3, None])
def test_not_a_list(tmp_path: Path, content: Any) -> None:
    path = write(tmp_path, json.dumps(content))
    assert raises(path) == f"CAPABILITIES_FILE {path} must hold a JSON list of rules"


@pytest.mark.parametrize("rule", [{"vision": True}, {"match": 5}, {"match": None}, "x", [1]])
def test_missing_match(tmp_path: Path, rule: Any) -> None:
    path = write(tmp_path, [{"match": "ok"}, rule])
    assert raises(path) == 'CAPABILITIES_FILE rule 2 needs a "match" regex'


def test_unknown_capability(tmp_path: Path) -> None:
    path = write(tmp_path, [{"match": "x", "vison": True}])
    message = raises(path)
    assert message.startswith("CAPABILITIES_FILE rule 1 names unknown capabilities ['vison']")
    assert "'vision'" in message


@pytest.mark.parametrize("value", ["true", 1, 0, 1.0, [True], {"a": 1}])
def test_non_bool_value(tmp_path: Path, value: Any) -> None:
    path = write(tmp_path, [{"match": "x", "vision": value}])
    assert raises(path) == "CAPABILITIES_FILE rule 1: use true, false or null"


def test_bad_regex(tmp_path: Path) -> None:
    path = write(tmp_path, [{"match": "Qwen(3", "vision": True}])
    message = raises(path)
    assert message.startswith("CAPABILITIES_FILE rule 1: bad regex: ")
    assert "missing )" in message


@pytest.mark.parametrize("provider", [None, 3, ["siliconflow"]])
def test_provider_must_be_text(tmp_path: Path, provider: Any) -> None:
    path = write(tmp_path, [{"match": "x", "provider": provider, "vision": True}])
    assert raises(path) == 'CAPABILITIES_FILE rule 1: "provider" must be a provider name'


def test_error_is_a_value_error() -> None:
    assert issubclass(CapabilityFileError, ValueError)
