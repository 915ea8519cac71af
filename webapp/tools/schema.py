"""A function's signature and docstring -> a JSON schema and a validator for its arguments."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from webapp.tools.context import ToolContext

# Keys whose values are data (not sub-schemas): copied as they are.
_DATA_KEYS = frozenset({"default", "enum", "const", "examples", "required"})
# Keys whose values map names to sub-schemas.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})
# Dropped: titles are noise for the model; discriminator mappings point at the removed $defs.
_DROPPED_KEYS = frozenset({"title", "$defs", "definitions", "discriminator"})
_MAX_INPUT_REPR = 60


class ToolSpecError(ValueError):
    """A tool definition that cannot be used; the message says which, what is wrong and the fix."""


class ToolArgumentsError(ValueError):
    """Arguments that do not match a tool's schema; `errors` holds one readable line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class FunctionSpec:
    """What a function's signature and docstring say about it as a tool."""

    description: str  # the docstring's summary and long description ("" when absent)
    parameters: dict[str, Any]  # {"type": "object", "properties": {...}, "required": [...]}
    model: type[BaseModel]  # validates the arguments (extra="forbid"); fields aliased by name
    context_param: str | None  # the parameter annotated ToolContext, if any


def describe_callable(fn: object) -> str:
    """A readable name for a function in error messages, e.g. `my_team.tools.forecast`."""
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    module = getattr(fn, "__module__", None)
    if qualname is None:
        return repr(fn)
    return f"{module}.{qualname}" if module else str(qualname)


def inspect_function(fn: Callable[..., Any], tool_name: str) -> FunctionSpec:
    """Read `fn`'s signature, type hints and docstring; raise ToolSpecError when unusable."""
    where = f'tool "{tool_name}" ({describe_callable(fn)})'
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolSpecError(f"{where}: cannot read its signature ({exc}).") from exc
    hints = _type_hints(fn, where)
    docstring = docstring_parser.parse(inspect.getdoc(fn) or "")
    param_docs = {p.arg_name: (p.description or "").strip() for p in docstring.params}

    fields: dict[str, Any] = {}
    context_param: str | None = None
    for index, param in enumerate(signature.parameters.values()):
        _check_kind(param, where)
        if param.name not in hints:
            raise ToolSpecError(
                f"{where}: parameter `{param.name}` has no type hint. Add one, "
                f"e.g. `{param.name}: str`; the model needs types to call the tool."
            )
        annotation = hints[param.name]
        if _is_context(annotation):
            if context_param is not None:
                raise ToolSpecError(
                    f"{where}: parameters `{context_param}` and `{param.name}` are both "
                    "annotated ToolContext. Keep one."
                )
            context_param = param.name
            continue
        if param.default is inspect.Parameter.empty:
            info = Field(alias=param.name)
        else:
            info = Field(default=param.default, alias=param.name)
        # Internal field names avoid clashes with BaseModel attributes (`json`, `schema`, ...).
        fields[f"p{index}"] = (annotation, info)

    model = _build_model(tool_name, fields, where)
    parameters = _parameters_schema(model, param_docs, where)
    summary = "\n\n".join(
        part.strip()
        for part in (docstring.short_description, docstring.long_description)
        if part and part.strip()
    )
    return FunctionSpec(summary, parameters, model, context_param)


def validate_arguments(model: type[BaseModel], arguments: dict[str, Any]) -> dict[str, Any]:
    """Validate `arguments` with `model`; return keyword arguments of proper Python types."""
    if not isinstance(arguments, dict):
        kind = type(arguments).__name__
        raise ToolArgumentsError([f"the arguments must be an object, not {kind}"])
    try:
        instance = model.model_validate(arguments)
    except ValidationError as exc:
        accepted = [info.alias or key for key, info in model.model_fields.items()]
        raise ToolArgumentsError(describe_errors(exc, accepted)) from None
    return {info.alias or key: getattr(instance, key) for key, info in model.model_fields.items()}


def describe_errors(error: ValidationError, accepted: list[str]) -> list[str]:
    """One readable line per error, e.g. "days: Input should be a valid integer (got 'x')"."""
    lines = []
    for item in error.errors(include_url=False):
        loc = _format_loc(item["loc"])
        if item["type"] == "missing":
            text = "required, but missing"
        elif item["type"] == "extra_forbidden" and len(item["loc"]) == 1:
            names = ", ".join(accepted) or "none"
            text = f"unexpected argument (accepted arguments: {names})"
        else:
            text = f"{item['msg']} (got {_short_repr(item.get('input'))})"
        lines.append(f"{loc}: {text}" if loc else text)
    return lines


def _type_hints(fn: Callable[..., Any], where: str) -> dict[str, Any]:
    """The resolved type hints of `fn` (string annotations included), with Annotated kept."""
    target: Any = fn
    if not (inspect.isroutine(fn) or inspect.isclass(fn)):
        target = fn.func if isinstance(fn, functools.partial) else type(fn).__call__
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception as exc:
        raise ToolSpecError(
            f"{where}: cannot resolve its type hints ({type(exc).__name__}: {exc}). "
            "Define the types it uses at module level and import them there."
        ) from exc


def _check_kind(param: inspect.Parameter, where: str) -> None:
    """Reject parameters that cannot be passed by keyword from a JSON object."""
    if param.kind is inspect.Parameter.VAR_POSITIONAL:
        raise ToolSpecError(
            f"{where}: `*{param.name}` is not supported; the model sends named arguments. "
            "Replace it with a named parameter, e.g. `items: list[str]`."
        )
    if param.kind is inspect.Parameter.VAR_KEYWORD:
        raise ToolSpecError(
            f"{where}: `**{param.name}` is not supported; every argument needs a declared type. "
            "Replace it with named parameters (or a `dict[str, str]` parameter)."
        )
    if param.kind is inspect.Parameter.POSITIONAL_ONLY:
        raise ToolSpecError(
            f"{where}: parameter `{param.name}` is positional-only; arguments are passed by "
            "name. Remove the `/` from the signature."
        )


def _is_context(annotation: Any) -> bool:
    """True for `ToolContext`, `ToolContext | None` and `Annotated[...]` forms of them."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if annotation is ToolContext:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return members == [ToolContext]
    return False


def _build_model(tool_name: str, fields: dict[str, Any], where: str) -> type[BaseModel]:
    """Create the arguments model; name the offending parameter when pydantic refuses a type."""
    config = ConfigDict(extra="forbid")
    try:
        model: type[BaseModel] = create_model(f"{tool_name}_arguments", __config__=config, **fields)
        model.model_json_schema()
        return model
    except Exception as exc:
        for key, (annotation, info) in fields.items():
            try:
                one: dict[str, Any] = {key: (annotation, info)}
                single = create_model("single", __config__=config, **one)
                single.model_json_schema()
            except Exception:
                raise ToolSpecError(
                    f"{where}: parameter `{info.alias}` has an unsupported type hint "
                    f"{_type_name(annotation)}: pydantic cannot describe it as JSON schema. Use "
                    "str, int, float, bool, Literal, an Enum, list, dict[str, ...], or a "
                    "pydantic model."
                ) from exc
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise ToolSpecError(f"{where}: cannot build a schema ({detail}).") from exc


def _parameters_schema(
    model: type[BaseModel], param_docs: dict[str, str], where: str
) -> dict[str, Any]:
    """The model's JSON schema with $refs inlined, titles dropped and docstring descriptions."""
    raw = model.model_json_schema()
    defs = raw.get("$defs", {})
    properties = {
        name: _clean(schema, defs, frozenset(), where)
        for name, schema in raw.get("properties", {}).items()
    }
    for key, info in model.model_fields.items():
        name = info.alias or key
        if info.description is None and param_docs.get(name):
            properties[name]["description"] = param_docs[name]
    return {"type": "object", "properties": properties, "required": list(raw.get("required", []))}


def _clean(schema: Any, defs: dict[str, Any], seen: frozenset[str], where: str) -> Any:
    """Inline every $ref and drop the keys that are noise for the model."""
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen or name not in defs:
            raise ToolSpecError(
                f"{where}: the type {name} refers to itself; recursive types cannot be inlined "
                "into a tool schema. Use a non-recursive structure."
            )
        resolved = _clean(defs[name], defs, seen | {name}, where)
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return {**resolved, **_clean(siblings, defs, seen, where)}
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED_KEYS:
            continue
        if key in _DATA_KEYS:
            cleaned[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            cleaned[key] = {n: _clean(s, defs, seen, where) for n, s in value.items()}
        elif isinstance(value, list):
            cleaned[key] = [_clean(item, defs, seen, where) for item in value]
        else:
            cleaned[key] = _clean(value, defs, seen, where)
    return cleaned


def _format_loc(loc: tuple[int | str, ...]) -> str:
    """("items", 0, "name") -> "items[0].name"."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short_repr(value: Any) -> str:
    """repr() cut to a length that fits in an error line."""
    text = repr(value)
    return text if len(text) <= _MAX_INPUT_REPR else text[: _MAX_INPUT_REPR - 1] + "…"


def _type_name(annotation: Any) -> str:
    """A readable name for a type hint."""
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation)
