"""The parameter table: ranges, "not set", types, and what reaches the request body."""

from __future__ import annotations

import json
from typing import Any

import pytest

from webapp.core.capabilities import Capabilities, CapabilityTable
from webapp.core.params import (
    JIEKOU_DEFAULT_MAX_TOKENS,
    PARAMS,
    PARAMS_BY_NAME,
    ParamError,
    normalize,
    request_params,
    warnings_for,
)


def refusal(values: dict[str, Any]) -> str:
    """The single error message normalize gives for these values."""
    with pytest.raises(ParamError) as info:
        normalize(values)
    assert len(info.value.errors) == 1, info.value.errors
    return info.value.errors[0]


# --- ranges: boundaries accepted, just outside refused -----------------------------------

ACCEPTED = [
    ("temperature", 0, 0.0),
    ("temperature", 2, 2.0),
    ("temperature", "1.25", 1.25),
    ("top_p", 0.0001, 0.0001),
    ("top_p", 1, 1.0),
    ("top_k", -1, -1),
    ("top_k", 1, 1),
    ("top_k", 100, 100),
    ("top_k", " 50 ", 50),
    ("min_p", 0, 0.0),
    ("min_p", 1, 1.0),
    ("frequency_penalty", -2, -2.0),
    ("frequency_penalty", 2, 2.0),
    ("presence_penalty", -2, -2.0),
    ("presence_penalty", 2, 2.0),
    ("repetition_penalty", 0.01, 0.01),
    ("repetition_penalty", 2, 2.0),
    ("n", 1, 1),
    ("n", 8, 8),
    ("seed", -(2**40), -(2**40)),
    ("seed", 0, 0),
    ("seed", "123456789012", 123456789012),
    ("max_tokens", 1, 1),
    ("max_tokens", 100000, 100000),
    ("max_tokens", 131072, 131072),
    ("thinking_budget", 128, 128),
    ("thinking_budget", 32768, 32768),
]


@pytest.mark.parametrize(("name", "raw", "expected"), ACCEPTED)
def test_boundary_values_are_accepted(name: str, raw: Any, expected: Any) -> None:
    clean = normalize({name: raw})
    assert clean == {name: expected}
    assert type(clean[name]) is type(expected)


REFUSED = [
    ("temperature", -0.01, "Temperature must be between 0 and 2"),
    ("temperature", 2.01, "Temperature must be between 0 and 2"),
    ("top_p", 0, "Top-p must be more than 0 and at most 1"),
    ("top_p", 1.01, "Top-p must be more than 0 and at most 1"),
    ("top_k", -2, "Top-k must be between -1 and 100"),
    ("top_k", 0, "Top-k must be -1 (off) or between 1 and 100"),
    ("top_k", 101, "Top-k must be between -1 and 100"),
    ("min_p", -0.01, "Min-p must be between 0 and 1"),
    ("min_p", 1.01, "Min-p must be between 0 and 1"),
    ("frequency_penalty", -2.1, "Frequency penalty must be between -2 and 2"),
    ("frequency_penalty", 2.1, "Frequency penalty must be between -2 and 2"),
    ("presence_penalty", -2.1, "Presence penalty must be between -2 and 2"),
    ("presence_penalty", 2.1, "Presence penalty must be between -2 and 2"),
    ("repetition_penalty", 0, "Repetition penalty must be more than 0 and at most 2"),
    ("repetition_penalty", 2.05, "Repetition penalty must be more than 0 and at most 2"),
    ("n", 0, "Choices (n) must be between 1 and 8"),
    ("n", 9, "Choices (n) must be between 1 and 8"),
    ("max_tokens", 0, "Max tokens must be between 1 and 131072"),
    ("max_tokens", 131073, "Max tokens must be between 1 and 131072"),
    ("thinking_budget", 127, "Thinking budget must be between 128 and 32768"),
    ("thinking_budget", 32769, "Thinking budget must be between 128 and 32768"),
    ("top_logprobs", 21, "Top log-probs must be between 0 and 20"),
    ("top_logprobs", -1, "Top log-probs must be between 0 and 20"),
]


@pytest.mark.parametrize(("name", "raw", "message"), REFUSED)
def test_just_outside_the_range_is_refused_naming_parameter_and_range(
    name: str, raw: Any, message: str
) -> None:
    values: dict[str, Any] = {name: raw}
    if name == "top_logprobs":
        values["logprobs"] = True
    error = refusal(values)
    assert error.startswith(message), error
    assert f"(got {raw:g})" in error


def test_range_error_message_is_exact() -> None:
    assert refusal({"temperature": "3"}) == "Temperature must be between 0 and 2 (got 3)"
    assert refusal({"max_tokens": -5}) == "Max tokens must be between 1 and 131072 (got -5)"


def test_top_logprobs_accepts_its_range_only_with_logprobs() -> None:
    assert normalize({"logprobs": True, "top_logprobs": 0}) == {"logprobs": True, "top_logprobs": 0}
    assert normalize({"logprobs": "on", "top_logprobs": 20}) == {
        "logprobs": True,
        "top_logprobs": 20,
    }
    assert refusal({"top_logprobs": 5}) == "Top log-probs needs Log-probs switched on"
    assert refusal({"top_logprobs": 5, "logprobs": False}) == (
        "Top log-probs needs Log-probs switched on"
    )


def test_max_tokens_above_16384_is_valid_but_warned() -> None:
    assert warnings_for(normalize({"max_tokens": 16384})) == []
    notes = warnings_for(normalize({"max_tokens": 16385}))
    assert len(notes) == 1
    assert notes[0].startswith("Max tokens 16385 is above 16384")
    assert warnings_for(normalize({"temperature": 2, "n": 8})) == []


# --- not set ------------------------------------------------------------------------------


@pytest.mark.parametrize("unset", [None, "", "   ", "default", " default "])
@pytest.mark.parametrize("name", [p.name for p in PARAMS])
def test_not_set_values_are_omitted(name: str, unset: Any) -> None:
    assert normalize({name: unset}) == {}


def test_not_set_is_omitted_beside_set_values() -> None:
    assert normalize({"temperature": "", "top_p": None, "seed": "7", "stop": "default"}) == {
        "seed": 7
    }


# --- wrong types --------------------------------------------------------------------------

NUMERIC = [p.name for p in PARAMS if p.kind in ("float", "int")]


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("raw", [True, False, [1], {"a": 1}])
def test_numbers_refuse_bools_lists_and_objects(name: str, raw: Any) -> None:
    label = PARAMS_BY_NAME[name].label
    values: dict[str, Any] = {name: raw}
    error = refusal(values)
    assert error == f"{label} must be a number, not {type(raw).__name__}"


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("raw", ["abc", "1,5", "nan", "inf"])
def test_numbers_refuse_non_numeric_text(name: str, raw: str) -> None:
    p = PARAMS_BY_NAME[name]
    kind = "a whole number" if p.kind == "int" else "a number"
    assert refusal({name: raw}) == f"{p.label} must be {kind}, got {raw!r}"


def test_whole_number_parameters_refuse_fractions() -> None:
    assert refusal({"max_tokens": 10.5}) == "Max tokens must be a whole number, got 10.5"
    assert refusal({"seed": "1.5"}) == "Seed must be a whole number, got '1.5'"
    assert refusal({"n": float("inf")}) == "Choices (n) must be a whole number, got inf"


def test_whole_number_parameters_accept_integral_floats() -> None:
    # A JSON client may send 4096.0 for max_tokens.
    assert normalize({"max_tokens": 4096.0, "seed": -3.0}) == {"max_tokens": 4096, "seed": -3}
    assert type(normalize({"n": 2.0})["n"]) is int


@pytest.mark.parametrize("name", [p.name for p in PARAMS if p.kind == "bool"])
def test_bools(name: str) -> None:
    label = PARAMS_BY_NAME[name].label
    for raw in (True, "true", "on", "Yes", "1"):
        assert normalize({name: raw}) == {name: True}
    for raw in (False, "false", "OFF", "no", "0"):
        assert normalize({name: raw}) == {name: False}
    assert refusal({name: "maybe"}) == f"{label} must be true or false, got 'maybe'"
    assert refusal({name: 1}) == f"{label} must be true or false, got 1"


def test_several_errors_are_all_reported() -> None:
    with pytest.raises(ParamError) as info:
        normalize({"temperature": 5, "top_k": "x", "bogus": 1})
    assert len(info.value.errors) == 3
    assert str(info.value) == "; ".join(info.value.errors)
    assert isinstance(info.value, ValueError)


def test_unknown_parameter_names_are_refused() -> None:
    error = refusal({"temprature": 0.5})
    assert error.startswith("Unknown parameter 'temprature'; known: temperature, top_p")
    assert "'model'" in refusal({"model": "x"})


def test_unknown_name_is_refused_even_when_unset() -> None:
    assert refusal({"foo": None}).startswith("Unknown parameter 'foo'")


# --- stop ---------------------------------------------------------------------------------


def test_stop_from_text_is_one_sequence_per_line() -> None:
    assert normalize({"stop": "END\n\n###"}) == {"stop": ["END", "###"]}


def test_stop_list_keeps_sequences_exact() -> None:
    assert normalize({"stop": ["\n", " user:"]}) == {"stop": ["\n", " user:"]}


def test_stop_allows_four_and_refuses_five() -> None:
    assert normalize({"stop": ["a", "b", "c", "d"]}) == {"stop": ["a", "b", "c", "d"]}
    assert refusal({"stop": "a\nb\nc\nd\ne"}) == "At most 4 stop sequences are allowed (got 5)"


@pytest.mark.parametrize("raw", [5, ["a", 1], ("a",), {"a": 1}])
def test_stop_refuses_non_text(raw: Any) -> None:
    assert refusal({"stop": raw}) == "Stop sequences must be text, one sequence per line"


def test_stop_of_only_empty_entries_is_not_set() -> None:
    assert normalize({"stop": ["", ""]}) == {}


# --- response_format ----------------------------------------------------------------------

SCHEMA = {"name": "answer", "schema": {"type": "object", "properties": {}}, "strict": True}


@pytest.mark.parametrize("raw", ["text", " text ", {"type": "text"}])
def test_response_format_text(raw: Any) -> None:
    assert normalize({"response_format": raw}) == {"response_format": {"type": "text"}}


@pytest.mark.parametrize("raw", ["json_object", {"type": "json_object"}, '{"type": "json_object"}'])
def test_response_format_json_object(raw: Any) -> None:
    assert normalize({"response_format": raw}) == {"response_format": {"type": "json_object"}}


@pytest.mark.parametrize(
    "raw",
    [
        SCHEMA,
        json.dumps(SCHEMA),
        {"type": "json_schema", "json_schema": SCHEMA},
        json.dumps({"type": "json_schema", "json_schema": SCHEMA}),
    ],
)
def test_response_format_json_schema_forms(raw: Any) -> None:
    assert normalize({"response_format": raw}) == {
        "response_format": {"type": "json_schema", "json_schema": SCHEMA}
    }


@pytest.mark.parametrize(
    "raw",
    [
        {"name": "x"},
        {"schema": {}},
        {"name": "x", "schema": "not an object"},
        {"type": "json_schema", "json_schema": "not an object"},
        {"type": "json_schema", "json_schema": {"name": "", "schema": {}}},
    ],
)
def test_response_format_incomplete_schema_is_refused(raw: Any) -> None:
    assert refusal({"response_format": raw}) == (
        'A JSON schema response format needs "name" and an object "schema"'
    )


def test_response_format_bad_text_and_types() -> None:
    assert refusal({"response_format": "yaml"}).startswith(
        "Response format must be text, json_object, or a JSON schema object"
    )
    assert refusal({"response_format": 3}) == (
        "Response format must be text, json_object, or a JSON object"
    )
    assert refusal({"response_format": "[1, 2]"}) == (
        "Response format must be text, json_object, or a JSON object"
    )


# --- logit_bias ---------------------------------------------------------------------------


def test_logit_bias_json_text_and_dict() -> None:
    assert normalize({"logit_bias": '{"1234": -100, "42": 5}'}) == {
        "logit_bias": {"1234": -100, "42": 5}
    }
    assert normalize({"logit_bias": {"7": 1}}) == {"logit_bias": {"7": 1}}


def test_logit_bias_refuses_bad_json_and_non_objects() -> None:
    assert refusal({"logit_bias": '{"1": '}).startswith("Logit bias is not valid JSON: ")
    assert "at line 1" in refusal({"logit_bias": "{oops}"})
    assert refusal({"logit_bias": "[1, 2]"}) == "Logit bias must be a JSON object"
    assert refusal({"logit_bias": 5}) == "Logit bias must be a JSON object"


# --- request_params -----------------------------------------------------------------------

TABLE = CapabilityTable()


def sent(values: dict[str, Any], model: str, kind: str, **kwargs: Any) -> dict[str, Any]:
    return request_params(normalize(values), TABLE.lookup(model, kind, kind), kind, **kwargs)


def test_min_p_is_dropped_for_a_non_qwen3_siliconflow_model() -> None:
    values = {"min_p": 0.1, "temperature": 0.5}
    assert sent(values, "deepseek-ai/DeepSeek-V3", "siliconflow") == {"temperature": 0.5}
    assert sent(values, "Qwen/Qwen3-32B", "siliconflow") == {"min_p": 0.1, "temperature": 0.5}


def test_enable_thinking_is_dropped_for_qwen25_and_kept_for_qwen3() -> None:
    values = {"enable_thinking": True, "thinking_budget": 1024}
    assert sent(values, "Qwen/Qwen2.5-72B-Instruct", "siliconflow") == {}
    assert sent(values, "Qwen/Qwen3-8B", "siliconflow") == {
        "enable_thinking": True,
        "thinking_budget": 1024,
    }


def test_unknown_capabilities_keep_the_parameter() -> None:
    values = {"min_p": 0.2, "enable_thinking": False, "thinking_budget": 256, "top_k": 20}
    body = request_params(normalize(values), Capabilities(), "openai")
    assert body == {"min_p": 0.2, "enable_thinking": False, "thinking_budget": 256, "top_k": 20}


def test_jiekou_always_gets_max_tokens() -> None:
    assert JIEKOU_DEFAULT_MAX_TOKENS == 4096
    assert sent({}, "deepseek/deepseek-v3.2", "jiekou") == {"max_tokens": 4096}
    assert sent({"max_tokens": 100}, "deepseek/deepseek-v3.2", "jiekou") == {"max_tokens": 100}
    assert sent({}, "Qwen/Qwen3-8B", "siliconflow") == {}
    assert request_params({}, Capabilities(), "openai") == {}


def test_separate_reasoning_only_goes_to_jiekou() -> None:
    values = {"separate_reasoning": True}
    assert sent(values, "deepseek/deepseek-r1", "jiekou") == {
        "separate_reasoning": True,
        "max_tokens": 4096,
    }
    assert sent(values, "deepseek-ai/DeepSeek-R1", "siliconflow") == {}
    assert request_params(normalize(values), Capabilities(), "openai") == {}


def test_tools_force_thinking_off_for_deepseek_v31() -> None:
    values = {"enable_thinking": True}
    model = "deepseek-ai/DeepSeek-V3.1"
    assert sent(values, model, "siliconflow", tools_sent=True) == {"enable_thinking": False}
    assert sent({}, model, "siliconflow", tools_sent=True) == {"enable_thinking": False}
    assert sent(values, model, "siliconflow") == {"enable_thinking": True}
    # Other thinking models keep the user's choice when tools are sent.
    assert sent(values, "Qwen/Qwen3-8B", "siliconflow", tools_sent=True) == {
        "enable_thinking": True
    }


def test_request_params_does_not_mutate_its_input() -> None:
    clean = normalize({"min_p": 0.1})
    request_params(clean, TABLE.lookup("deepseek-ai/DeepSeek-V3", "siliconflow"), "jiekou")
    assert clean == {"min_p": 0.1}
