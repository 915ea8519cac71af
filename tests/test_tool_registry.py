"""ToolRegistry: registration forms, the @tool marker, definition errors and module loading."""

import functools
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from webapp.tools.context import ToolContext
from webapp.tools.registry import Tool, ToolRegistry, ToolSpecError, tool


def forecast(city: str, days: int = 1) -> str:
    """Weather forecast for a city."""
    return f"{city}:{days}"


def current_time() -> str:
    """The current time."""
    return "now"


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry()


@pytest.fixture
def clean_modules() -> Iterator[None]:
    """Forget modules imported by a test, so each test imports its own fresh copy."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_register_call_returns_the_function(registry: ToolRegistry) -> None:
    assert registry.register(forecast) is forecast
    built = registry.get("forecast")
    assert isinstance(built, Tool)
    assert built.function is forecast
    assert built.description == "Weather forecast for a city."
    assert built.needs_approval is False and built.timeout_s is None
    assert forecast("a") == "a:1"


def test_register_as_plain_decorator(registry: ToolRegistry) -> None:
    @registry.register
    def echo(text: str) -> str:
        """Echo the text."""
        return text

    assert echo("x") == "x"
    assert registry.names() == ["echo"]


def test_register_as_decorator_with_options(registry: ToolRegistry) -> None:
    @registry.register(name="delete-file", needs_approval=True, timeout_s=5)
    def delete(path: str) -> str:
        """Delete a file."""
        return path

    assert delete("p") == "p"
    built = registry.get("delete-file")
    assert built is not None
    assert (built.needs_approval, built.timeout_s) == (True, 5.0)
    assert "delete" not in registry


def test_description_option_replaces_docstring(registry: ToolRegistry) -> None:
    registry.register(forecast, description="Use for weather questions.")
    assert registry.tools()[0].description == "Use for weather questions."


def test_marker_only_marks() -> None:
    def plain(x: int) -> int:
        """Plain."""
        return x

    assert tool(plain) is plain
    assert tool(needs_approval=True)(plain) is plain
    assert plain.__parley_tool__.needs_approval is True  # type: ignore[attr-defined]
    assert len(ToolRegistry()) == 0  # no global registry was filled


def test_marker_options_used_and_overridden(registry: ToolRegistry) -> None:
    @tool(name="marked", needs_approval=True, timeout_s=2, description="From the marker.")
    def marked_fn(x: int) -> int:
        """Docstring."""
        return x

    registry.register(marked_fn)
    built = registry.get("marked")
    assert built is not None
    assert (built.needs_approval, built.timeout_s, built.description) == (
        True,
        2.0,
        "From the marker.",
    )
    other = ToolRegistry()
    other.register(marked_fn, name="renamed", needs_approval=False, timeout_s=9)
    renamed = other.get("renamed")
    assert renamed is not None
    assert (renamed.needs_approval, renamed.timeout_s) == (False, 9.0)
    assert renamed.description == "From the marker."


def test_lookup_order_and_membership(registry: ToolRegistry) -> None:
    registry.register(forecast)
    registry.register(current_time)
    assert registry.names() == ["forecast", "current_time"]
    assert len(registry) == 2
    assert "forecast" in registry and "nope" not in registry and 3 not in registry
    assert registry.get("nope") is None
    assert [t.name for t in registry.tools()] == ["forecast", "current_time"]
    assert [t.name for t in registry.tools(["current_time", "forecast"])] == [
        "current_time",
        "forecast",
    ]
    assert registry.tools([]) == []


def test_tools_with_unknown_name(registry: ToolRegistry) -> None:
    registry.register(forecast)
    registry.register(current_time)
    with pytest.raises(ToolSpecError) as caught:
        registry.tools(["forecast", "weather"])
    assert str(caught.value) == "unknown tool 'weather'; known tools: forecast, current_time."


def test_async_tool_and_callable_object(registry: ToolRegistry) -> None:
    async def fetch(url: str) -> str:
        """Fetch a URL."""
        return url

    class Counter:
        """Count things."""

        def __call__(self, start: int) -> int:
            return start + 1

    registry.register(fetch)
    registry.register(Counter(), name="counter")
    registry.register(functools.partial(forecast, days=3), name="forecast3")
    counter = registry.get("counter")
    assert counter is not None and counter.parameters["required"] == ["start"]
    assert counter.description == "Count things."
    forecast3 = registry.get("forecast3")
    assert forecast3 is not None
    assert forecast3.parameters["properties"]["days"]["default"] == 3


def test_lambda_with_name_and_description(registry: ToolRegistry) -> None:
    registry.register(lambda: "hi", name="hello", description="Say hi.")
    hello = registry.get("hello")
    assert hello is not None and hello.function() == "hi"


def no_doc(x: int) -> int:
    return x


def with_args(*values: int) -> int:
    """Sum."""
    return sum(values)


def with_kwargs(**options: str) -> str:
    """Options."""
    return ""


def positional_only(x: int, /) -> int:
    """Positional."""
    return x


def missing_hint(x, y: int) -> int:
    """Missing hint."""
    return y


def unresolvable(x: "NoSuchType") -> int:  # type: ignore[name-defined]  # noqa: F821
    """Unresolvable."""
    return 0


def two_contexts(a: ToolContext, b: ToolContext | None = None) -> int:
    """Two contexts."""
    return 0


def unsupported(count: int, fn: Callable[[int], int]) -> int:
    """Unsupported."""
    return 0


@pytest.mark.parametrize(
    ("fn", "options", "fragments"),
    [
        (forecast, {"name": "has space"}, ["tool name 'has space'", "is invalid", 'name="..."']),
        (forecast, {"name": "x" * 65}, ["is invalid", "1-64 letters, digits, '_' or '-'"]),
        (forecast, {"name": ""}, ["tool name '' ", "is invalid"]),
        (lambda: 1, {"description": "d"}, ["<lambda>", 'has no usable name. Pass name="..."']),
        (
            no_doc,
            {},
            [
                'tool "no_doc" (tests.test_tool_registry.no_doc) has no description: add a '
                "docstring: the model needs it to know when to call the tool"
            ],
        ),
        (forecast, {"description": "  "}, ["has no description"]),
        (forecast, {"description": ""}, ["has no description"]),
        (with_args, {}, ['tool "with_args"', "`*values` is not supported", "named parameter"]),
        (with_kwargs, {}, ["`**options` is not supported", "named parameters"]),
        (positional_only, {}, ["`x` is positional-only", "Remove the `/`"]),
        (missing_hint, {}, ['tool "missing_hint"', "parameter `x` has no type hint", "`x: str`"]),
        (unresolvable, {}, ["cannot resolve its type hints (NameError", "module level"]),
        (two_contexts, {}, ["`a` and `b` are both annotated ToolContext"]),
        (unsupported, {}, ['tool "unsupported"', "parameter `fn` has an unsupported type hint"]),
        (forecast, {"timeout_s": 0}, ["timeout_s must be a positive number"]),
        (forecast, {"timeout_s": -1.0}, ["timeout_s must be a positive number"]),
        (forecast, {"timeout_s": float("nan")}, ["timeout_s must be a positive number"]),
        ("not callable", {}, ["'not callable' is not callable"]),
    ],
)
def test_bad_definitions(
    registry: ToolRegistry, fn: Any, options: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(ToolSpecError) as caught:
        registry.register(fn, **options)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert len(registry) == 0


def test_duplicate_name(registry: ToolRegistry) -> None:
    registry.register(forecast)

    def other(city: str) -> str:
        """Other."""
        return city

    with pytest.raises(ToolSpecError) as caught:
        registry.register(other, name="forecast")
    assert str(caught.value) == (
        'tool "forecast" (tests.test_tool_registry.test_duplicate_name.<locals>.other) is '
        "already registered by tests.test_tool_registry.forecast. Pass name=... to register "
        "it under another name."
    )
    assert registry.get("forecast") is not None
    assert registry.get("forecast").function is forecast  # type: ignore[union-attr]


def test_valid_name_characters(registry: ToolRegistry) -> None:
    registry.register(forecast, name="A-z_09")
    registry.register(current_time, name="x" * 64)
    assert registry.names() == ["A-z_09", "x" * 64]


MODULE_SOURCE = '''
from webapp.tools.registry import tool


@tool
def second(x: int) -> int:
    """Second."""
    return x


@tool(needs_approval=True)
def first(x: int) -> int:
    """First."""
    return x


def not_a_tool(x: int) -> int:
    """Not marked."""
    return x


def extra(y: str) -> str:
    """Added by the hook."""
    return y


def register_tools(registry):
    registry.register(extra, name="hooked")
'''


def write_package(root: Path, source: str) -> str:
    """Write a package with a `tools` module under `root`; return its dotted name."""
    package = f"pkg_{uuid.uuid4().hex[:8]}"
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    (root / package / "tools.py").write_text(textwrap.dedent(source))
    return f"{package}.tools"


@pytest.mark.usefixtures("clean_modules")
def test_load_dotted_module(
    registry: ToolRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    dotted = write_package(tmp_path, MODULE_SOURCE)
    assert registry.load(dotted) == 3
    assert registry.names() == ["second", "first", "hooked"]
    first = registry.get("first")
    assert first is not None and first.needs_approval is True


@pytest.mark.usefixtures("clean_modules")
def test_load_file_path(registry: ToolRegistry, tmp_path: Path) -> None:
    path = tmp_path / "team.py"
    path.write_text(textwrap.dedent(MODULE_SOURCE))
    assert registry.load(str(path)) == 3
    assert registry.names() == ["second", "first", "hooked"]
    second = registry.get("second")
    assert second is not None and second.function(4) == 4


@pytest.mark.usefixtures("clean_modules")
def test_load_counts_reexported_tools_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    dotted = write_package(tmp_path, MODULE_SOURCE)
    package = dotted.split(".")[0]
    (tmp_path / package / "more.py").write_text(
        textwrap.dedent(
            f'''
            from webapp.tools.registry import tool
            from {dotted} import first


            @tool
            def third(x: int) -> int:
                """Third."""
                return x
            '''
        )
    )
    both = ToolRegistry()
    assert both.load(dotted) == 3
    assert both.load(f"{package}.more") == 1  # `first` is already registered: skipped
    assert both.names() == ["second", "first", "hooked", "third"]
    alone = ToolRegistry()
    assert alone.load(f"{package}.more") == 2  # a re-exported marked function counts
    assert alone.names() == ["first", "third"]


@pytest.mark.usefixtures("clean_modules")
def test_load_module_without_tools(registry: ToolRegistry, tmp_path: Path) -> None:
    path = tmp_path / "empty.py"
    path.write_text("def helper(x: int) -> int:\n    return x\n")
    with pytest.raises(ToolSpecError) as caught:
        registry.load(str(path))
    assert str(caught.value) == (
        f'TOOLS_MODULES entry "{path}" provides no tools. Mark functions with @tool '
        "(from webapp.tools.registry import tool) or define register_tools(registry)."
    )


def test_load_missing_module(registry: ToolRegistry) -> None:
    with pytest.raises(ToolSpecError) as caught:
        registry.load("no_such_team.tools")
    message = str(caught.value)
    assert message.startswith('TOOLS_MODULES entry "no_such_team.tools": cannot import module')
    assert "No module named 'no_such_team'" in message
    assert "installed or on PYTHONPATH" in message


def test_load_missing_file(registry: ToolRegistry, tmp_path: Path) -> None:
    path = tmp_path / "missing.py"
    with pytest.raises(ToolSpecError) as caught:
        registry.load(str(path))
    assert str(caught.value) == (
        f'TOOLS_MODULES entry "{path}": file {str(path)!r} not found. Give an existing .py file.'
    )


@pytest.mark.usefixtures("clean_modules")
def test_load_file_with_syntax_error(registry: ToolRegistry, tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("def broken(:\n    pass\n")
    with pytest.raises(ToolSpecError) as caught:
        registry.load(str(path))
    message = str(caught.value)
    assert message.startswith(f'TOOLS_MODULES entry "{path}": importing {str(path)!r} failed:')
    assert "SyntaxError" in message
    assert not any(name.startswith("parley_tools_broken") for name in sys.modules)


@pytest.mark.usefixtures("clean_modules")
def test_load_module_that_raises_on_import(
    registry: ToolRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    dotted = write_package(tmp_path, "raise RuntimeError('no API key')\n")
    with pytest.raises(ToolSpecError) as caught:
        registry.load(dotted)
    assert str(caught.value) == (
        f'TOOLS_MODULES entry "{dotted}": importing {dotted!r} failed: RuntimeError: no API key'
    )


@pytest.mark.usefixtures("clean_modules")
def test_load_failure_leaves_registry_unchanged(registry: ToolRegistry, tmp_path: Path) -> None:
    registry.register(forecast)
    path = tmp_path / "half.py"
    path.write_text(
        textwrap.dedent(
            '''
            from webapp.tools.registry import tool


            @tool
            def fine(x: int) -> int:
                """Fine."""
                return x


            @tool
            def undocumented(x: int) -> int:
                return x
            '''
        )
    )
    with pytest.raises(ToolSpecError) as caught:
        registry.load(str(path))
    message = str(caught.value)
    assert message.startswith(f'TOOLS_MODULES entry "{path}": tool "undocumented"')
    assert "add a docstring" in message
    assert registry.names() == ["forecast"]


@pytest.mark.usefixtures("clean_modules")
def test_load_hook_failure(registry: ToolRegistry, tmp_path: Path) -> None:
    path = tmp_path / "hook.py"
    path.write_text("def register_tools(registry):\n    raise KeyError('token')\n")
    with pytest.raises(ToolSpecError) as caught:
        registry.load(str(path))
    assert str(caught.value) == (
        f"TOOLS_MODULES entry \"{path}\": register_tools(registry) failed: KeyError: 'token'"
    )
