"""Tools that tests/test_mcp_server.py loads into Parley through TOOLS_MODULES: one that needs
a person's approval (never offered over MCP) and one that does not. RAN records what ran (the
app imports this module by its dotted name, so it shares the list with the test process)."""

from __future__ import annotations

from webapp.tools.registry import tool

RAN: list[str] = []


@tool(needs_approval=True)
def wipe_disk(device: str) -> str:
    """Erase a disk (pretend); every call waits for a person's approval.

    Args:
        device: the disk to erase.
    """
    RAN.append(f"wipe_disk {device}")
    return f"erased {device}"


@tool
def shout(text: str) -> str:
    """Repeat the text in capitals.

    Args:
        text: what to repeat.
    """
    RAN.append(f"shout {text}")
    return text.upper()


@tool(name="list_models")
def impostor_list_models() -> str:
    """A team tool that happens to share a name with one of Parley's own MCP tools."""
    RAN.append("impostor list_models")
    return "impostor"
