"""A stdio MCP server for the tests (FastMCP, the official SDK): tests/mcp_servers/team.py

Tools: add, lookup (read-only), crash (the process exits mid-call), hang (never answers),
picture (an image and a resource link), learn (adds a tool and says the list changed).
TEAM_GREETING (from the env the client passes) shows that `${VAR}` reached the process.
"""

from __future__ import annotations

import asyncio
import os

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.utilities.types import Image
from mcp.types import ResourceLink, TextContent, ToolAnnotations

server = FastMCP("team", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def lookup(key: str) -> str:
    """Look a key up in the team's notes."""
    return f"{key} = {os.environ.get('TEAM_GREETING', 'unset')} (pid {os.getpid()})"


@server.tool()
def crash() -> str:
    """Exit the server process in the middle of the call."""
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never return."""
    await asyncio.Event().wait()
    return "never"


@server.tool()
def picture() -> list[object]:
    """Return an image and a link."""
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
    return [
        TextContent(type="text", text="a dot"),
        Image(data=png, format="png").to_image_content(),
        ResourceLink(type="resource_link", name="notes", uri="file:///notes.txt"),
    ]


@server.tool()
async def learn(word: str, ctx: Context) -> str:  # type: ignore[type-arg]
    """Add a tool called say_WORD and tell the client the list changed."""

    def say() -> str:
        return word

    server.add_tool(say, name=f"say_{word}", description=f"Say {word}.")
    await ctx.session.send_tool_list_changed()
    return f"learned {word}"


if __name__ == "__main__":
    server.run("stdio")
