"""The tool registry: typed functions with docstrings become tools the model can call."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import importlib.util
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from webapp.tools.schema import (
    ToolArgumentsError,
    ToolSpecError,
    describe_callable,
    inspect_function,
    validate_arguments,
)

__all__ = ["Tool", "ToolArgumentsError", "ToolRegistry", "ToolSpecError", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

MARKER_ATTRIBUTE = "__parley_tool__"
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # the providers' rule for function names


@dataclass(frozen=True)
class ToolOptions:
    """Options attached to a function by the @tool marker (None: not given)."""

    name: str | None = None
    description: str | None = None
    needs_approval: bool | None = None
    timeout_s: float | None = None


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    needs_approval: bool = False,
    timeout_s: float | None = None,
) -> Callable[[F], F]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    needs_approval: bool = False,
    timeout_s: float | None = None,
) -> Any:
    """Mark a function as a tool (@tool or @tool(...)); it is returned unchanged."""
    options = ToolOptions(name, description, needs_approval, timeout_s)

    def mark(target: F) -> F:
        try:
            setattr(target, MARKER_ATTRIBUTE, options)
        except (AttributeError, TypeError) as exc:
            raise ToolSpecError(
                f"{describe_callable(target)} cannot be marked with @tool ({exc}). "
                "Register it with registry.register(...) instead."
            ) from exc
        return target

    return mark if fn is None else mark(fn)


@dataclass(frozen=True)
class Tool:
    """A registered tool: its name, description, JSON schema and the function that runs it."""

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    needs_approval: bool = False
    timeout_s: float | None = None
    context_param: str | None = None
    # Validates arguments; built from `function` when a Tool is made by hand without it.
    arguments_model: type[BaseModel] | None = field(default=None, repr=False, compare=False)
    # Tools not made from a Python signature (MCP) bring their own check of the arguments.
    validator: Callable[[dict[str, Any]], dict[str, Any]] | None = field(
        default=None, repr=False, compare=False
    )
    group: str | None = None  # where the tool comes from (an MCP server's name); None: Python
    read_only: bool | None = None  # the tool says it changes nothing (MCP readOnlyHint)

    def schema(self) -> dict[str, Any]:
        """The tool in the OpenAI `tools` format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": copy.deepcopy(self.parameters),
            },
        }

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check the model's arguments; return the keyword arguments to call with (no context)."""
        if self.validator is not None:
            return self.validator(arguments)
        model = self.arguments_model or inspect_function(self.function, self.name).model
        return validate_arguments(model, arguments)


def build_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    needs_approval: bool | None = None,
    timeout_s: float | None = None,
) -> Tool:
    """Make a Tool from a function; the given options win over those of its @tool marker."""
    if not callable(fn):
        raise ToolSpecError(f"{fn!r} is not callable; only functions can be registered as tools.")
    marker = getattr(fn, MARKER_ATTRIBUTE, None)
    if not isinstance(marker, ToolOptions):
        marker = ToolOptions()
    where = describe_callable(fn)
    tool_name = _tool_name(fn, name if name is not None else marker.name, where)
    where = f'tool "{tool_name}" ({where})'

    approval = needs_approval if needs_approval is not None else marker.needs_approval
    if not isinstance(approval, bool | None):
        raise ToolSpecError(f"{where}: needs_approval must be True or False, not {approval!r}.")
    limit = timeout_s if timeout_s is not None else marker.timeout_s
    if limit is not None and (
        isinstance(limit, bool)
        or not isinstance(limit, int | float)
        or not math.isfinite(limit)
        or limit <= 0
    ):
        raise ToolSpecError(f"{where}: timeout_s must be a positive number of seconds or None.")

    spec = inspect_function(fn, tool_name)
    given = description if description is not None else marker.description
    text = (spec.description if given is None else given).strip()
    if not text:
        raise ToolSpecError(
            f"{where} has no description: add a docstring: the model needs it to know when to "
            'call the tool (or pass description="...").'
        )
    return Tool(
        name=tool_name,
        description=text,
        parameters=spec.parameters,
        function=fn,
        needs_approval=bool(approval),
        timeout_s=None if limit is None else float(limit),
        context_param=spec.context_param,
        arguments_model=spec.model,
    )


class ToolRegistry:
    """The tools available to the model, in registration order."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    @overload
    def register(
        self,
        fn: F,
        *,
        name: str | None = None,
        description: str | None = None,
        needs_approval: bool | None = None,
        timeout_s: float | None = None,
    ) -> F: ...

    @overload
    def register(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        needs_approval: bool | None = None,
        timeout_s: float | None = None,
    ) -> Callable[[F], F]: ...

    def register(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        needs_approval: bool | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Register `fn` (or decorate); raise ToolSpecError at once for a bad definition."""

        def add(target: F) -> F:
            built = build_tool(
                target,
                name=name,
                description=description,
                needs_approval=needs_approval,
                timeout_s=timeout_s,
            )
            existing = self._tools.get(built.name)
            if existing is not None:
                raise ToolSpecError(
                    f'tool "{built.name}" ({describe_callable(target)}) is already registered '
                    f"by {describe_callable(existing.function)}. Pass name=... to register it "
                    "under another name."
                )
            self._tools[built.name] = built
            return target

        return add if fn is None else add(fn)

    def set_group(self, group: str, tools: Iterable[Tool]) -> None:
        """Replace the tools of `group` (e.g. an MCP server's list, which can change at any time).

        Copy-on-write: readers on other threads see the old dict or the new one, never a dict
        changing under them. A name taken by a tool outside the group is skipped.
        """
        kept = {n: t for n, t in self._tools.items() if t.group != group}
        for new in tools:
            if new.name not in kept:
                kept[new.name] = dataclasses.replace(new, group=group)
        self._tools = kept

    def get(self, name: str) -> Tool | None:
        """The tool called `name`, or None."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        """Tool names in registration order."""
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def tools(self, names: Iterable[str] | None = None) -> list[Tool]:
        """The tools called `names` (all when None); an unknown name raises ToolSpecError."""
        current = self._tools  # one snapshot: MCP servers may swap their tools meanwhile
        if names is None:
            return list(current.values())
        wanted = list(names)
        unknown = [name for name in wanted if name not in current]
        if unknown:
            known = ", ".join(current) or "none"
            raise ToolSpecError(
                f"unknown tool {', '.join(f'{n!r}' for n in unknown)}; known tools: {known}."
            )
        return [current[name] for name in wanted]

    def load(self, spec: str) -> int:
        """Import a module (dotted name or .py path), register its tools; return how many."""
        before = dict(self._tools)
        try:
            module = _import(spec)
            for value in list(vars(module).values()):
                marked = isinstance(getattr(value, MARKER_ATTRIBUTE, None), ToolOptions)
                if marked and not self._holds(value):
                    self.register(value)
            _call_hook(module, self)
        except ToolSpecError as exc:
            self._tools = before
            raise ToolSpecError(f'TOOLS_MODULES entry "{spec}": {exc}') from exc
        added = len(self._tools) - len(before)
        if added == 0:
            raise ToolSpecError(
                f'TOOLS_MODULES entry "{spec}" provides no tools. Mark functions with @tool '
                "(from webapp.tools.registry import tool) or define register_tools(registry)."
            )
        return added

    def _holds(self, fn: object) -> bool:
        """True when this very function is already registered (e.g. imported from elsewhere)."""
        return any(existing.function is fn for existing in self._tools.values())


def _call_hook(module: ModuleType, registry: ToolRegistry) -> None:
    """Call the module's register_tools(registry), if it defines one."""
    hook = getattr(module, "register_tools", None)
    if not callable(hook):
        return
    try:
        hook(registry)
    except ToolSpecError:
        raise
    except Exception as exc:
        raise ToolSpecError(
            f"register_tools(registry) failed: {type(exc).__name__}: {exc}"
        ) from exc


def _tool_name(fn: Callable[..., Any], name: str | None, where: str) -> str:
    """The tool's name: the one given, else the function's; checked against NAME_PATTERN."""
    if name is None:
        name = getattr(fn, "__name__", None)
        if name is None or name == "<lambda>":
            raise ToolSpecError(f'{where} has no usable name. Pass name="..." when registering it.')
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ToolSpecError(
            f"tool name {name!r} ({where}) is invalid: use 1-64 letters, digits, '_' or '-'. "
            'Pass name="..." with a valid name.'
        )
    return name


def _import(spec: str) -> ModuleType:
    """Import a dotted module name or a .py file; raise ToolSpecError with the reason."""
    text = spec.strip()
    if text.endswith(".py") or "/" in text or "\\" in text:
        return _import_file(Path(text).expanduser())
    try:
        return importlib.import_module(text)
    except ModuleNotFoundError as exc:
        raise ToolSpecError(
            f"cannot import module {text!r} ({exc}). Check the name, and that the package is "
            "installed or on PYTHONPATH."
        ) from exc
    except Exception as exc:
        raise ToolSpecError(f"importing {text!r} failed: {type(exc).__name__}: {exc}") from exc


def _import_file(path: Path) -> ModuleType:
    """Import a .py file under a module name derived from its absolute path."""
    if not path.is_file():
        raise ToolSpecError(f"file {str(path)!r} not found. Give an existing .py file.")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    module_name = f"parley_tools_{re.sub(r'[^0-9a-zA-Z_]', '_', resolved.stem)}_{digest}"
    loader_spec = importlib.util.spec_from_file_location(module_name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise ToolSpecError(f"cannot import {str(path)!r}: not a Python module.")
    module = importlib.util.module_from_spec(loader_spec)
    # Registered before running so dataclasses and pydantic can resolve the module's own types.
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ToolSpecError(f"importing {str(path)!r} failed: {type(exc).__name__}: {exc}") from exc
    return module
