"""Tools that tests/test_browser_tools.py loads into Parley through TOOLS_MODULES.

Module-level records let the tests see what ran: the app imports this module by its dotted
name (``tests.tools_for_browser``), so it shares these objects with the test process.
"""

from __future__ import annotations

import asyncio
import threading

from webapp.tools.registry import tool

DELETED: list[str] = []  # the paths delete_file was really run on
WAIT_STARTED = threading.Event()  # wait_forever is running
WAIT_CANCELLED = threading.Event()  # wait_forever was cancelled (Stop)


def reset() -> None:
    DELETED.clear()
    WAIT_STARTED.clear()
    WAIT_CANCELLED.clear()


@tool(needs_approval=True)
def delete_file(path: str) -> str:
    """Delete a file (pretend); every call waits for the user's approval.

    Args:
        path: the file to delete.
    """
    DELETED.append(path)
    return f"deleted {path}"


@tool
async def wait_forever(reason: str) -> str:
    """Wait until the turn is stopped; it never finishes by itself.

    Args:
        reason: why the model is waiting.
    """
    WAIT_STARTED.set()
    try:
        await asyncio.get_running_loop().create_future()  # never resolved
    except asyncio.CancelledError:
        WAIT_CANCELLED.set()
        raise
    return f"stopped waiting for {reason}"
