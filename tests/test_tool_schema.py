"""JSON schemas from signatures and docstrings, and argument validation."""

# No `from __future__ import annotations` here: tools defined inside tests use local types.
# String annotations are covered by test_future_annotations_module.

import enum
import json
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from webapp.tools.context import ToolContext
from webapp.tools.registry import Tool, ToolArgumentsError, ToolRegistry, ToolSpecError, build_tool
from webapp.tools.schema import inspect_function


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Address(BaseModel):
    """A postal address."""

    street: str
    zip_code: Annotated[str, Field(description="Postal code.")]


class Person(BaseModel):
    """Someone to invite."""

    name: str
    title: str = ""  # a field literally called "title" must survive title stripping
    address: Address
    unit: Unit = Unit.CELSIUS


class Node(BaseModel):
    """A tree node."""

    children: list["Node"] = []


def walk_schema_keys(schema: Any) -> list[str]:
    """Every key used at a schema position (property names excluded)."""
    keys: list[str] = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            keys.append(key)
            if key == "properties":
                for sub in value.values():
                    keys.extend(walk_schema_keys(sub))
            elif key not in ("default", "enum", "required"):
                keys.extend(walk_schema_keys(value))
    elif isinstance(schema, list):
        for item in schema:
            keys.extend(walk_schema_keys(item))
    return keys


def params(fn: Any) -> dict[str, Any]:
    return build_tool(fn).parameters


def test_scalars_required_and_defaults() -> None:
    def scalars(text: str, count: int, ratio: float = 0.5, flag: bool = False) -> str:
        """Scalars."""
        return ""

    assert params(scalars) == {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "count": {"type": "integer"},
            "ratio": {"type": "number", "default": 0.5},
            "flag": {"type": "boolean", "default": False},
        },
        "required": ["text", "count"],
    }


def test_no_parameters_gives_empty_object() -> None:
    def now() -> str:
        """The time."""
        return ""

    assert params(now) == {"type": "object", "properties": {}, "required": []}


def test_literal_and_enum() -> None:
    def pick(mode: Literal["fast", "slow"], unit: Unit = Unit.FAHRENHEIT) -> str:
        """Pick."""
        return ""

    properties = params(pick)["properties"]
    assert properties["mode"] == {"type": "string", "enum": ["fast", "slow"]}
    assert properties["unit"] == {
        "type": "string",
        "enum": ["celsius", "fahrenheit"],
        "default": "fahrenheit",
    }


def test_lists_and_dicts() -> None:
    def collect(
        numbers: list[int],
        modes: list[Literal["a", "b"]],
        units: list[Unit],
        weights: dict[str, float],
        nested: list[list[str]],
    ) -> str:
        """Collect."""
        return ""

    properties = params(collect)["properties"]
    assert properties["numbers"] == {"type": "array", "items": {"type": "integer"}}
    assert properties["modes"] == {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}
    assert properties["units"] == {
        "type": "array",
        "items": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    }
    assert properties["weights"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert properties["nested"] == {
        "type": "array",
        "items": {"type": "array", "items": {"type": "string"}},
    }


def test_optional_forms() -> None:
    def optional(
        a: int | None = None,
        b: Optional[str] = None,  # noqa: UP045 - the typing spelling is supported too
        c: str | None = "x",
    ) -> str:
        """Optional."""
        return ""

    schema = params(optional)
    assert schema["required"] == []
    nullable_int = {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
    assert schema["properties"]["a"] == nullable_int
    assert schema["properties"]["b"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "default": None,
    }
    assert schema["properties"]["c"]["default"] == "x"


def test_optional_without_default_is_required() -> None:
    def maybe(value: int | None) -> str:
        """Maybe."""
        return ""

    assert params(maybe)["required"] == ["value"]
    assert build_tool(maybe).validate({"value": None}) == {"value": None}


def test_nested_models_are_inlined_without_refs() -> None:
    def invite(host: Person, guests: list[Person]) -> str:
        """Invite people."""
        return ""

    schema = params(invite)
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    person = {
        "type": "object",
        "description": "Someone to invite.",
        "properties": {
            "name": {"type": "string"},
            "title": {"type": "string", "default": ""},
            "address": {
                "type": "object",
                "description": "A postal address.",
                "properties": {
                    "street": {"type": "string"},
                    "zip_code": {"type": "string", "description": "Postal code."},
                },
                "required": ["street", "zip_code"],
            },
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        },
        "required": ["name", "address"],
    }
    assert schema["properties"]["host"] == person
    assert schema["properties"]["guests"] == {"type": "array", "items": person}


def test_titles_stripped_everywhere_but_title_properties_kept() -> None:
    def titled(title: str, person: Person) -> str:
        """Titled."""
        return ""

    schema = params(titled)
    assert "title" not in walk_schema_keys(schema)
    assert schema["properties"]["title"] == {"type": "string"}
    assert "title" in schema["properties"]["person"]["properties"]


def test_annotated_field_description_and_constraints() -> None:
    def rate(
        stars: Annotated[int, Field(description="From 1 to 5.", ge=1, le=5)],
        comment: Annotated[str, Field(max_length=10)] = "",
    ) -> str:
        """Rate something.

        Args:
            stars: Docstring text loses to the explicit Field description.
            comment: A short comment.
        """
        return ""

    properties = params(rate)["properties"]
    assert properties["stars"] == {
        "type": "integer",
        "description": "From 1 to 5.",
        "minimum": 1,
        "maximum": 5,
    }
    assert properties["comment"] == {
        "type": "string",
        "maxLength": 10,
        "default": "",
        "description": "A short comment.",
    }
    with pytest.raises(ToolArgumentsError) as caught:
        build_tool(rate).validate({"stars": 9})
    assert caught.value.errors == ["stars: Input should be less than or equal to 5 (got 9)"]


def test_docstring_param_overrides_model_docstring() -> None:
    def send(to: Address) -> str:
        """Send.

        :param to: Where to send it.
        """
        return ""

    assert params(send)["properties"]["to"]["description"] == "Where to send it."


GOOGLE = """Get the weather forecast.

    Uses the public service; slow for long ranges.

    Args:
        city: The city name.
        days: How many days
            ahead to look.

    Returns:
        The forecast.
    """
REST = """Get the weather forecast.

    Uses the public service; slow for long ranges.

    :param city: The city name.
    :param days: How many days
        ahead to look.
    :returns: The forecast.
    """
NUMPY = """Get the weather forecast.

    Uses the public service; slow for long ranges.

    Parameters
    ----------
    city : str
        The city name.
    days : int
        How many days
        ahead to look.
    """


@pytest.mark.parametrize("docstring", [GOOGLE, REST, NUMPY], ids=["google", "rest", "numpy"])
def test_docstring_styles(docstring: str) -> None:
    def forecast(city: str, days: int = 1) -> str:
        return ""

    forecast.__doc__ = docstring
    built = build_tool(forecast)
    assert built.description == (
        "Get the weather forecast.\n\nUses the public service; slow for long ranges."
    )
    assert built.parameters["properties"]["city"] == {
        "type": "string",
        "description": "The city name.",
    }
    assert built.parameters["properties"]["days"]["description"] == "How many days\nahead to look."


@pytest.mark.parametrize("annotation", [ToolContext, ToolContext | None, Optional[ToolContext]])  # noqa: UP045
def test_context_parameter_excluded(annotation: Any) -> None:
    def lookup(query: str, ctx: ToolContext) -> str:
        """Look up."""
        return ""

    lookup.__annotations__["ctx"] = annotation
    built = build_tool(lookup)
    assert built.context_param == "ctx"
    assert built.parameters == {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    }
    assert built.validate({"query": "x"}) == {"query": "x"}
    with pytest.raises(ToolArgumentsError):
        built.validate({"query": "x", "ctx": {}})


def test_no_context_parameter() -> None:
    def plain(query: str) -> str:
        """Plain."""
        return ""

    assert build_tool(plain).context_param is None


def test_future_annotations_module(tmp_path: Path) -> None:
    path = tmp_path / "future_tools.py"
    path.write_text(
        textwrap.dedent(
            '''
            from __future__ import annotations

            import enum

            from pydantic import BaseModel

            from webapp.tools.context import ToolContext
            from webapp.tools.registry import tool


            class Size(enum.Enum):
                SMALL = "s"
                LARGE = "l"


            class Item(BaseModel):
                """An item."""

                name: str
                size: Size = Size.SMALL


            @tool
            def order(items: list[Item], note: str | None = None, ctx: ToolContext | None = None):
                """Order items."""
                return ",".join(f"{i.name}:{i.size.name}" for i in items)
            '''
        )
    )
    registry = ToolRegistry()
    assert registry.load(str(path)) == 1
    order = registry.get("order")
    assert order is not None and order.context_param == "ctx"
    assert order.parameters["properties"]["items"]["items"]["properties"]["size"] == {
        "type": "string",
        "enum": ["s", "l"],
        "default": "s",
    }
    kwargs = order.validate({"items": [{"name": "a", "size": "l"}]})
    assert order.function(**kwargs) == "a:LARGE"


def test_parameter_names_that_shadow_basemodel_attributes() -> None:
    def odd(json: str, schema: int, model_config: bool, copy: float = 1.0) -> str:
        """Odd names."""
        return ""

    built = build_tool(odd)
    assert list(built.parameters["properties"]) == ["json", "schema", "model_config", "copy"]
    assert built.validate({"json": "j", "schema": "2", "model_config": True}) == {
        "json": "j",
        "schema": 2,
        "model_config": True,
        "copy": 1.0,
    }


def test_validation_returns_proper_python_types() -> None:
    def plan(people: list[Person], unit: Unit, host: Person, count: int) -> str:
        """Plan."""
        return ""

    address = {"street": "Main", "zip_code": "1"}
    kwargs = build_tool(plan).validate(
        {
            "people": [{"name": "a", "address": address}],
            "unit": "fahrenheit",
            "host": {"name": "h", "address": address, "unit": "celsius"},
            "count": "5",
        }
    )
    assert kwargs["unit"] is Unit.FAHRENHEIT
    assert isinstance(kwargs["host"], Person) and kwargs["host"].unit is Unit.CELSIUS
    assert isinstance(kwargs["people"][0], Person)
    assert isinstance(kwargs["people"][0].address, Address)
    assert kwargs["count"] == 5 and isinstance(kwargs["count"], int)


def strict_tool() -> Tool:
    def days_ahead(days: int, city: str, exact: bool = False) -> str:
        """Days ahead."""
        return ""

    return build_tool(days_ahead)


@pytest.mark.parametrize(
    ("arguments", "errors"),
    [
        (
            {"days": "abc", "city": "x"},
            [
                "days: Input should be a valid integer, unable to parse string as an integer "
                "(got 'abc')"
            ],
        ),
        (
            {"days": 1.5, "city": "x"},
            [
                "days: Input should be a valid integer, got a number with a fractional part "
                "(got 1.5)"
            ],
        ),
        ({"days": 1}, ["city: required, but missing"]),
        (
            {"days": 1, "city": "x", "country": "y"},
            ["country: unexpected argument (accepted arguments: days, city, exact)"],
        ),
        (
            {"days": 1, "city": "x", "exact": "maybe"},
            ["exact: Input should be a valid boolean, unable to interpret input (got 'maybe')"],
        ),
        (
            {},
            ["days: required, but missing", "city: required, but missing"],
        ),
    ],
)
def test_validation_errors(arguments: dict[str, Any], errors: list[str]) -> None:
    with pytest.raises(ToolArgumentsError) as caught:
        strict_tool().validate(arguments)
    assert caught.value.errors == errors
    assert str(caught.value) == "; ".join(errors)


def test_lax_coercion_of_json_strings() -> None:
    assert strict_tool().validate({"days": "5", "city": "x", "exact": "true"}) == {
        "days": 5,
        "city": "x",
        "exact": True,
    }


def test_nested_error_locations() -> None:
    def invite(guests: list[Person]) -> str:
        """Invite."""
        return ""

    with pytest.raises(ToolArgumentsError) as caught:
        build_tool(invite).validate({"guests": [{"name": "a", "address": {"street": "s"}}]})
    assert caught.value.errors == ["guests[0].address.zip_code: required, but missing"]


def test_long_inputs_are_shortened_in_errors() -> None:
    with pytest.raises(ToolArgumentsError) as caught:
        strict_tool().validate({"days": "x" * 500, "city": "c"})
    (error,) = caught.value.errors
    assert error.endswith("(got '" + "x" * 58 + "…)")


def test_schema_returns_openai_shape_and_a_copy() -> None:
    def ping(host: str) -> str:
        """Ping a host."""
        return ""

    built = build_tool(ping)
    schema = built.schema()
    assert schema == {
        "type": "function",
        "function": {"name": "ping", "description": "Ping a host.", "parameters": built.parameters},
    }
    schema["function"]["parameters"]["properties"].clear()
    assert built.parameters["properties"] == {"host": {"type": "string"}}


def test_hand_made_tool_validates_from_its_function() -> None:
    def ping(host: str, count: int = 1) -> str:
        """Ping."""
        return ""

    made = Tool(name="ping", description="Ping.", parameters={}, function=ping)
    assert made.validate({"host": "h", "count": "2"}) == {"host": "h", "count": 2}
    with pytest.raises(ToolArgumentsError):
        made.validate({"count": 2})


def test_recursive_model_is_rejected() -> None:
    def grow(root: Node) -> str:
        """Grow a tree."""
        return ""

    with pytest.raises(ToolSpecError, match=r'tool "grow" .*Node refers to itself'):
        build_tool(grow)


def test_unsupported_type_names_the_parameter() -> None:
    class Opaque:
        pass

    def use(thing: Opaque, n: int = 1) -> str:
        """Use."""
        return ""

    with pytest.raises(ToolSpecError) as caught:
        build_tool(use)
    message = str(caught.value)
    assert message.startswith('tool "use" (')
    assert "parameter `thing` has an unsupported type hint Opaque" in message
    assert "Use str, int, float, bool, Literal, an Enum, list, dict[str, ...]" in message


def test_inspect_function_description_comes_from_docstring() -> None:
    def helper(x: int) -> int:
        """Short.

        Long part.
        """
        return x

    spec = inspect_function(helper, "helper")
    assert spec.description == "Short.\n\nLong part."
    assert spec.context_param is None
    assert spec.parameters["required"] == ["x"]
