"""What the Parley processes of one deployment share: run slots, who owns each answer, Stop.

`Cluster` is one process alone, the default without REDIS_URL: nothing is shared, every
method is a no-op, and the RunManager's own counts are the whole server's. With REDIS_URL,
`webapp.app.redis_cluster.RedisCluster` shares them between processes and hosts. The run
manager calls these hooks; it does not know which one it has.

Each process has an id, stamped on the answer rows it streams (`messages.owner`). A process
that dies leaves rows "streaming" under its id; `Reaper` lets any other process (or the next
start of this one) mark them interrupted, with the text saved so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlmodel import Session

from storage import message_rows
from storage.db import unit_of_work

# (user id, conversation id) -> how many of this process's runs were stopped
StopLocal = Callable[[int, str], Awaitable[int]]
# (user id, conversation id, approved) -> whether a tool call of this process was waiting
DecideLocal = Callable[[int, str, bool], bool]


class LiveRun(Protocol):
    """What the cluster knows of a run (webapp.app.runs.Run)."""

    id: str
    user_id: int
    conversation_id: str
    kind: str
    snapshot: Any


def new_process_id() -> str:
    """An id for this process, unique across hosts and restarts: host, pid and a nonce."""
    host = socket.gethostname()[:40] or "host"
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Reaper:
    """The database side of ending a dead process's answers (functions run in a thread)."""

    owners: Callable[[], Awaitable[set[str | None]]]  # owners of rows still "streaming"
    interrupt: Callable[[Collection[str | None]], Awaitable[int]]  # mark theirs interrupted


class Cluster:
    """One Parley process alone: nothing to share (no REDIS_URL)."""

    shared = False

    def __init__(self, process_id: str | None = None) -> None:
        self.process_id = process_id or new_process_id()

    async def hold(self, user_id: int, count: int, limit: int) -> list[str]:
        """Hold `count` of the user's run slots across every process (RunLimitReached when
        that passes `limit`); returns the slots' ids. Alone, the RunManager counts suffice."""
        return []

    def release(self, slots: Sequence[str]) -> None:
        """Give slots back (a run ended, or a reservation went unused)."""

    def run_started(self, run: LiveRun) -> None:
        """A run of this process began (other processes can find it, follow it, stop it)."""

    def run_ended(self, run: LiveRun) -> None:
        """A run of this process ended (its final state is in `run.snapshot`)."""

    async def runs_elsewhere(
        self, user_id: int, conversation_id: str, kind: str | None = None
    ) -> list[Any]:
        """The user's live runs of a conversation on the other processes, as local stand-ins
        (webapp.app.runs.Run) that follow the owner's snapshots; alone, none."""
        return []

    async def stop_elsewhere(self, user_id: int, conversation_id: str, timeout_s: float) -> int:
        """Stop the user's runs in a conversation on the other processes and wait (up to
        `timeout_s`) for their final saves; returns how many were stopped."""
        return 0

    async def decide_elsewhere(
        self, user_id: int, conversation_id: str, approved: bool, timeout_s: float = 5.0
    ) -> bool:
        """Approve or deny the oldest tool call waiting in the conversation on the process
        that runs it; False when none waits anywhere."""
        return False

    async def health(self) -> str | None:
        """None when what the cluster needs answers, else the problem in one line."""
        return None

    @contextlib.asynccontextmanager
    async def running(
        self, stop_local: StopLocal, reaper: Reaper, decide_local: DecideLocal | None = None
    ) -> AsyncIterator[None]:
        """Keep this process's share alive while the server runs (heartbeat, Stop and
        approval requests from other processes, ending dead processes' answers). Alone:
        nothing to do, since the start marked every answer left streaming as interrupted."""
        yield


def database_reaper(sessions: Callable[[], Session]) -> Reaper:
    """The Reaper over Parley's database: each call is one short unit of work in a thread."""

    def owners() -> set[str | None]:
        with unit_of_work(sessions) as session:
            return message_rows.streaming_owners(session=session)

    def interrupt(dead: Collection[str | None]) -> int:
        with unit_of_work(sessions) as session:
            return message_rows.mark_interrupted(session=session, owners=dead)

    async def owners_async() -> set[str | None]:
        return await asyncio.to_thread(owners)

    async def interrupt_async(dead: Collection[str | None]) -> int:
        return await asyncio.to_thread(interrupt, dead)

    return Reaper(owners_async, interrupt_async)
