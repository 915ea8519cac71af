"""MCP tools and results in Parley's terms: names, schemas, argument checks, result text. Pure."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators
from mcp import types

from webapp.tools.registry import ToolArgumentsError

_INVALID = re.compile(r"[^a-zA-Z0-9_-]")


def tool_name(server: str, tool: str, taken: set[str]) -> str:
    """`SERVER__TOOL`, made to fit the providers' `^[a-zA-Z0-9_-]{1,64}$` and unique in `taken`."""
    name = f"{_INVALID.sub('_', server)}__{_INVALID.sub('_', tool)}"
    if len(name) <= 64 and name not in taken:
        return name
    digest = hashlib.sha1(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


def result_text(result: types.CallToolResult) -> str:
    """A tool result as the text the model reads: text, JSON, and a line per image/resource."""
    parts: list[str] = []
    for item in result.content:
        if isinstance(item, types.TextContent):
            parts.append(item.text)
        elif isinstance(item, types.ImageContent | types.AudioContent):
            size = len(item.data) * 3 // 4
            kind = "image" if isinstance(item, types.ImageContent) else "audio"
            parts.append(f"[{kind}: {item.mimeType}, about {size:,} bytes; not shown here]")
        elif isinstance(item, types.ResourceLink):
            parts.append(f"[resource link: {item.name} <{item.uri}>]")
        elif isinstance(item, types.EmbeddedResource):
            resource = item.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource: {resource.uri} ({resource.mimeType or 'binary'})]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return "\n\n".join(parts) or "(no output)"


def parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """The tool's input schema as the provider's `parameters` (always an object schema)."""
    shown = dict(schema or {})
    shown.setdefault("type", "object")
    shown.setdefault("properties", {})
    return shown


def validator(schema: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Check arguments against the server's JSON schema (a broken schema checks nothing)."""
    try:
        cls = validators.validator_for(schema)
        cls.check_schema(schema)
        checker: Any = cls(schema)
    except (schema_errors.SchemaError, TypeError):
        checker = None

    def validate(arguments: dict[str, Any]) -> dict[str, Any]:
        if checker is not None:
            problems = [
                f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
                for e in sorted(checker.iter_errors(arguments), key=lambda e: list(e.path))
            ]
            if problems:
                raise ToolArgumentsError(problems[:10])
        return arguments

    return validate
