"""MCP_SERVERS_FILE: the `{"mcpServers": {...}}` file other MCP clients use, checked and typed.

Pure: reads one JSON file and a mapping of environment values; no processes, no network.
Every error names the file, the server and the field, and says what to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Transport = Literal["stdio", "http", "sse"]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USER_REF = re.compile(r"\{\{\s*user\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_KNOWN_FIELDS = frozenset(
    {
        "command",
        "args",
        "env",
        "cwd",
        "url",
        "headers",
        "type",
        "transport",
        "trust",
        "trusted_tools",
        "timeout",
        "disabled",
        "description",
    }
)


class McpConfigError(ValueError):
    """MCP_SERVERS_FILE cannot be used; the message names the file, server and field."""


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    """One server from the file, with `${VAR}` already replaced (secrets: never log them)."""

    name: str
    transport: Transport
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    trust: bool = False
    trusted_tools: frozenset[str] = frozenset()
    timeout_s: float | None = None  # per call; None: TOOL_TIMEOUT
    user_fields: tuple[str, ...] = ()  # {{user.X}} names in headers, set by each user

    def trusted(self, tool_name: str) -> bool:
        """True when calls of this server's `tool_name` run without asking."""
        return self.trust or tool_name in self.trusted_tools


def load_mcp_servers(path: str | Path, environ: Mapping[str, str]) -> tuple[McpServerConfig, ...]:
    """Read and check the file; raise McpConfigError saying what is wrong and where."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise McpConfigError(f"MCP_SERVERS_FILE {where}: cannot read it ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise McpConfigError(
            f"MCP_SERVERS_FILE {where}: not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise McpConfigError(
            f'MCP_SERVERS_FILE {where}: expected {{"mcpServers": {{"NAME": {{...}}}}}} at the top'
        )
    servers = []
    for name, spec in data["mcpServers"].items():
        parsed = _server(where, name, spec, environ)
        if parsed is not None:
            servers.append(parsed)
    return tuple(servers)


def _server(where: str, name: str, spec: Any, environ: Mapping[str, str]) -> McpServerConfig | None:
    """One server entry, or None when it is marked "disabled": true.

    Long: one check per field of the entry, each refusal naming the server and the field."""

    def fail(field_name: str, problem: str) -> McpConfigError:
        return McpConfigError(
            f'MCP_SERVERS_FILE {where}: server "{name}", field "{field_name}": {problem}'
        )

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
        raise fail("(name)", "use 1-40 letters, digits, '_' or '-' for a server name")
    if not isinstance(spec, dict):
        raise fail("(entry)", "expected an object with a command or a url")
    unknown = sorted(set(spec) - _KNOWN_FIELDS)
    if unknown:
        raise fail(unknown[0], f"unknown field; known fields: {', '.join(sorted(_KNOWN_FIELDS))}")
    if spec.get("disabled") is True:
        return None
    trust = spec.get("trust", False)
    if not isinstance(trust, bool):
        raise fail("trust", "must be true or false")
    trusted_tools = spec.get("trusted_tools", [])
    if not isinstance(trusted_tools, list) or not all(isinstance(t, str) for t in trusted_tools):
        raise fail("trusted_tools", "must be a list of tool names")
    timeout = spec.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise fail("timeout", "must be a positive number of seconds")
    common: dict[str, Any] = {
        "name": name,
        "trust": trust,
        "trusted_tools": frozenset(trusted_tools),
        "timeout_s": None if timeout is None else float(timeout),
    }
    has_command, has_url = "command" in spec, "url" in spec
    if has_command == has_url:
        raise fail("command", 'give either "command" (stdio) or "url" (HTTP), not both or neither')
    if has_command:
        command = spec["command"]
        if not isinstance(command, str) or not command.strip():
            raise fail("command", "must be a non-empty string")
        args = spec.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise fail("args", "must be a list of strings")
        cwd = spec.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise fail("cwd", "must be a string")
        env = _string_map(spec.get("env", {}), lambda problem: fail("env", problem))
        return McpServerConfig(
            transport="stdio",
            command=command,
            args=tuple(args),
            env={k: _expand(v, environ, fail, f"env.{k}") for k, v in env.items()},
            cwd=cwd,
            **common,
        )
    url = spec["url"]
    if not isinstance(url, str) or not re.match(r"https?://", url):
        raise fail("url", "must be an http:// or https:// URL")
    kind = spec.get("type", spec.get("transport"))
    if kind is None:
        transport: Transport = "sse" if url.rstrip("/").endswith("/sse") else "http"
    elif kind in ("http", "streamable-http", "streamable_http", "streamableHttp"):
        transport = "http"
    elif kind == "sse":
        transport = "sse"
    else:
        raise fail("type", f'{kind!r} is not supported: use "http" (Streamable HTTP) or "sse"')
    headers = _string_map(spec.get("headers", {}), lambda problem: fail("headers", problem))
    expanded = {k: _expand(v, environ, fail, f"headers.{k}") for k, v in headers.items()}
    user_fields = tuple(
        dict.fromkeys(m.group(1) for value in expanded.values() for m in _USER_REF.finditer(value))
    )
    return McpServerConfig(
        transport=transport, url=url, headers=expanded, user_fields=user_fields, **common
    )


def fill_user_fields(headers: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    """Headers with each `{{user.X}}` replaced by the user's value (KeyError when one is unset)."""
    return {k: _USER_REF.sub(lambda m: values[m.group(1)], v) for k, v in headers.items()}


def drop_user_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers without those that need a user's value (for the server-wide session)."""
    return {k: v for k, v in headers.items() if not _USER_REF.search(v)}


def _string_map(value: Any, fail: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise fail("must be an object of strings")
    return dict(value)


def _expand(value: str, environ: Mapping[str, str], fail: Any, field_name: str) -> str:
    """Replace each `${VAR}` with the environment's value; a missing one is an error."""

    def one(match: re.Match[str]) -> str:
        variable = match.group(1)
        if variable not in environ:
            raise fail(field_name, f"${{{variable}}} is not set in the environment or .env")
        return environ[variable]

    return _ENV_REF.sub(one, value)
