"""A stdio MCP server for the tests (FastMCP, the official SDK): tests/mcp_servers/team.py

Tools: add, lookup (read-only), crash (the process exits mid-call), hang (never answers),
picture (Pillow images and a resource link), learn (adds a tool and says the list changed).
TEAM_GREETING (from the env the client passes) shows that `${VAR}` reached the process.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os

from mcp.server.fastmcp import Context, FastMCP
from mcp.types import ImageContent, ResourceLink, TextContent, ToolAnnotations
from PIL import Image

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
def picture(count: int = 1, kind: str = "png", side: int = 2) -> list[object]:
    """Return `count` images (Pillow: PNG, or `kind` such as tiff; `side` pixels square, of
    random colours so they stay large) and a link."""
    images = []
    for number in range(count):
        out = io.BytesIO()
        pixels = os.urandom(side * side * 3) if side > 2 else bytes([number * 40 % 256] * 12)
        Image.frombytes("RGB", (side, side), pixels).save(out, kind.upper())
        data = base64.b64encode(out.getvalue()).decode("ascii")
        images.append(ImageContent(type="image", data=data, mimeType=f"image/{kind}"))
    return [
        TextContent(type="text", text="a dot"),
        *images,
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
