"""A small stdio MCP server (the official SDK's FastMCP), run by Parley from examples/mcp.json."""

from __future__ import annotations

import datetime

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

server = FastMCP("clock", log_level="WARNING")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def utc_now() -> str:
    """The current date and time in UTC, ISO 8601."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@server.tool()
def days_between(start: str, end: str) -> int:
    """Days from one ISO date (YYYY-MM-DD) to another."""
    return (datetime.date.fromisoformat(end) - datetime.date.fromisoformat(start)).days


if __name__ == "__main__":
    server.run("stdio")
