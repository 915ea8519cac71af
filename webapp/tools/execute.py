"""Run one tool call safely: every tool-side failure becomes a ToolResult the model can read."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import json
import logging
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel

from webapp.core.messages import ToolCall, ToolOutput, ToolResult
from webapp.tools.context import ToolContext
from webapp.tools.registry import Tool, ToolArgumentsError, ToolRegistry

logger = logging.getLogger(__name__)

_RETRY_HINT = "Send a JSON object matching the tool's schema."


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    """What a call produced before it is wrapped in a ToolResult."""

    content: str
    status: str = "done"
    error: str | None = None
    images: tuple[dict[str, Any], ...] = ()


class ToolExecutor:
    """Runs tool calls with validation, a timeout and a cap on the result size."""

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        timeout_s: float = 30.0,
        max_result_chars: int = 20_000,
        max_workers: int = 8,
    ) -> None:
        self._registry = registry
        self._timeout_s = timeout_s
        self._max_result_chars = max_result_chars
        # Our own bounded pool: the default executor is used by the database layer.
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="parley-tool")

    async def run(
        self, call: ToolCall, context: ToolContext, offered: Collection[str]
    ) -> ToolResult:
        """Run one call if its tool is among those `offered` in this turn; never raises for
        tool-side problems (CancelledError propagates).

        A call to a registered tool the turn did not offer is refused like an unknown one: a
        prompt-injected model must not reach tools the user did not choose.
        """
        started = time.monotonic()
        outcome = await self._run(call, context, offered)
        return ToolResult(
            call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            content=self._truncate(outcome.content),
            status=outcome.status,
            duration_ms=int((time.monotonic() - started) * 1000),
            error=outcome.error,
            images=outcome.images,
        )

    def close(self) -> None:
        """Shut the thread pool down without waiting for running tools."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(
        self, call: ToolCall, context: ToolContext, offered: Collection[str]
    ) -> _Outcome:
        """Look the tool up, parse and validate the arguments, call it, convert the result."""
        tool = self._registry.get(call.name) if call.name in offered else None
        if tool is None:
            available = ", ".join(n for n in self._registry.names() if n in offered) or "none"
            return _Outcome(
                f'Error: there is no tool named "{call.name}". Available tools: {available}.',
                "error",
                "unknown tool",
            )
        parsed = _parse_arguments(call.arguments)
        if isinstance(parsed, _Outcome):
            return parsed
        try:
            kwargs = tool.validate(parsed)
        except ToolArgumentsError as exc:
            return _invalid(tool.name, "; ".join(exc.errors))
        except Exception as exc:  # e.g. a model validator raising something unexpected
            return _invalid(tool.name, f"{type(exc).__name__}: {exc}")
        if tool.context_param is not None:
            kwargs[tool.context_param] = context
        return await self._call(tool, kwargs)

    async def _call(self, tool: Tool, kwargs: dict[str, Any]) -> _Outcome:
        """Call the tool under its timeout; exceptions become error outcomes."""
        limit = tool.timeout_s if tool.timeout_s is not None else self._timeout_s
        try:
            async with asyncio.timeout(limit):
                # Exceptions are caught inside the timeout scope, so a TimeoutError raised by
                # the tool itself is reported as a failure, not as our timeout.
                try:
                    value = await self._invoke(tool, kwargs)
                    if isinstance(value, ToolOutput):
                        return _Outcome(to_text(value.text), images=value.images)
                    return _Outcome(to_text(value))
                except (Exception, SystemExit) as exc:
                    logger.warning("tool %s failed", tool.name, exc_info=True)
                    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    return _Outcome(f"Error: {tool.name} failed: {detail}", "error", detail)
        except TimeoutError:
            # An async tool was cancelled. A sync tool cannot be killed: its thread runs on
            # until the function returns, and its result is then discarded.
            logger.warning("tool %s did not finish within %g s", tool.name, limit)
            return _Outcome(
                f"Error: {tool.name} did not finish within {limit:g} s and was abandoned.",
                "timeout",
                "timeout",
            )

    async def _invoke(self, tool: Tool, kwargs: dict[str, Any]) -> Any:
        """Await an async tool; run a sync one in the pool, off the event loop."""
        if _is_async(tool.function):
            return await tool.function(**kwargs)
        loop = asyncio.get_running_loop()
        call = functools.partial(tool.function, **kwargs)
        value = await loop.run_in_executor(self._pool, contextvars.copy_context().run, call)
        if inspect.isawaitable(value):  # a sync wrapper around a coroutine function
            value = await value
        return value

    def _truncate(self, content: str) -> str:
        """Keep the first max_result_chars characters and say how much was cut."""
        limit = self._max_result_chars
        if len(content) <= limit:
            return content
        return (
            f"{content[:limit]}\n\n[Truncated: the result was {len(content):,} characters; "
            f"only the first {limit:,} are included.]"
        )


def to_text(value: Any) -> str:
    """A tool's return value as the text sent to the model."""
    if isinstance(value, str):
        return value or "(no output)"
    if value is None:
        return "(no output)"
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace") or "(no output)"
    return json.dumps(_jsonable(value), ensure_ascii=False, default=_json_default)


def _jsonable(value: Any) -> Any:
    """Pydantic models and dataclass instances as plain data; anything else unchanged."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _json_default(value: Any) -> Any:
    """json.dumps fallback: nested models and dataclasses as data, anything else as str()."""
    converted = _jsonable(value)
    return str(value) if converted is value else converted


def _parse_arguments(text: str) -> dict[str, Any] | _Outcome:
    """The arguments as a dict, or an error outcome telling the model how to fix them."""
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"column {exc.colno}"
        if exc.lineno > 1:
            where = f"line {exc.lineno}, {where}"
        return _Outcome(
            f"Error: the arguments are not valid JSON ({exc.msg} at {where}). {_RETRY_HINT}",
            "error",
            "invalid JSON",
        )
    except (ValueError, RecursionError) as exc:
        return _Outcome(
            f"Error: the arguments are not valid JSON ({exc}). {_RETRY_HINT}",
            "error",
            "invalid JSON",
        )
    if not isinstance(parsed, dict):
        return _Outcome(
            f"Error: the arguments must be a JSON object, not {_json_kind(parsed)}. {_RETRY_HINT}",
            "error",
            "arguments not an object",
        )
    return parsed


def _invalid(name: str, details: str) -> _Outcome:
    """The outcome for arguments that do not match the schema."""
    return _Outcome(
        f"Error: invalid arguments for {name}: {details}. "
        "Fix these and call the tool again with arguments matching its schema.",
        "error",
        "invalid arguments",
    )


def _json_kind(value: Any) -> str:
    """How a parsed JSON value is called in JSON terms: "an array", "a string", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else "a number"


def _is_async(function: Any) -> bool:
    """True for coroutine functions, including callable objects with an async __call__."""
    if inspect.iscoroutinefunction(function):
        return True
    return inspect.iscoroutinefunction(type(function).__call__)
