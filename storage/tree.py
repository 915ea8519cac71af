"""The message tree of a conversation: the active path, versions (siblings) and leaf choice.

Pure functions over loaded `Message` rows; no session, no I/O.
"""

from __future__ import annotations

from datetime import datetime

from storage.models import Message


def order_key(message: Message) -> tuple[datetime, int, str]:
    """Sort key giving creation order."""
    return (message.created_at, message.choice_index, message.id)


def active_path(messages: list[Message], leaf_id: str | None) -> list[Message]:
    """Return the root-to-leaf path ending at ``leaf_id`` (or at the newest message)."""
    by_id = {message.id: message for message in messages}
    leaf = by_id.get(leaf_id) if leaf_id is not None else None
    if leaf is None:
        if not messages:
            return []
        leaf = max(messages, key=order_key)
    path: list[Message] = []
    seen: set[str] = set()
    node: Message | None = leaf
    while node is not None and node.id not in seen:
        seen.add(node.id)
        path.append(node)
        node = by_id.get(node.parent_id) if node.parent_id is not None else None
    path.reverse()
    return path


def siblings(messages: list[Message], message_id: str) -> list[Message]:
    """Return the alternatives of a message (same parent and role) in creation order."""
    target = next((message for message in messages if message.id == message_id), None)
    if target is None:
        return []
    same = [
        message
        for message in messages
        if message.parent_id == target.parent_id and message.role == target.role
    ]
    return sorted(same, key=order_key)


def latest_leaf_under(messages: list[Message], message_id: str) -> str:
    """Follow the newest child from ``message_id`` down to a leaf and return its id."""
    children: dict[str, list[Message]] = {}
    for message in messages:
        if message.parent_id is not None:
            children.setdefault(message.parent_id, []).append(message)
    current = message_id
    seen = {current}
    while current in children:
        newest = max(children[current], key=order_key)
        if newest.id in seen:
            break
        seen.add(newest.id)
        current = newest.id
    return current
