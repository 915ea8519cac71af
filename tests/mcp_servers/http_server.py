"""An HTTP MCP server for the tests: python tests/mcp_servers/http_server.py PORT [sse]

Streamable HTTP at /mcp, or with `sse` the legacy SSE transport at /sse.

Tools: whoami (the Authorization header it was called with), shout.
"""

from __future__ import annotations

import sys

from mcp.server.fastmcp import Context, FastMCP

server = FastMCP("tracker", host="127.0.0.1", port=int(sys.argv[1]), log_level="WARNING")


@server.tool()
def whoami(ctx: Context) -> str:  # type: ignore[type-arg]
    """Say which Authorization header the call came with."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", {})
    return f"authorization={headers.get('authorization', '')}"


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


if __name__ == "__main__":
    server.run("sse" if sys.argv[2:] == ["sse"] else "streamable-http")
