"""Runs of another process as a viewer here follows them (REDIS_URL).

A stand-in (`RemoteRun`) is a Run without a task: viewers watch it like a local one, and
`follow` keeps its snapshot up to date from the owner's stream `parley:run:{id}`, asking the
owner to keep sending (every lease/3) until the run ends. Stop and approvals go to the owner
through its control channel (webapp/app/redis_cluster.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from webapp.app import run_wire
from webapp.app.runs import Run

if TYPE_CHECKING:
    from webapp.app.redis_cluster import RedisCluster

log = logging.getLogger(__name__)


@dataclass(eq=False)
class RemoteRun(Run):
    """A run of another process, as a viewer here watches it: its snapshot follows the
    owner's stream (`RedisCluster._follow`); it has no task here, so Stop goes to the owner."""

    follow: asyncio.Task[None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # first snapshot (or end)
    last_entry: str = "0-0"  # the owner's stream, read up to here


async def follow(cluster: RedisCluster, run: RemoteRun, owner: str) -> None:
    """Keep a stand-in up to date from the owner's stream until the run ends, or its
    owner has been silent for a lease (dead: another process marks the row interrupted).
    Through a Redis restart it reconnects and goes on: the owner's heartbeat writes the
    index again, and its next snapshot starts the stream again."""
    stream = cluster.stream_key(run.id)
    asked = checked = float("-inf")
    silent_since: float | None = None  # when the owner (or Redis) was last heard from
    key = cluster.live_key(run.user_id, run.conversation_id)
    watch = json.dumps({"op": "watch", "run": run.id})
    try:
        while True:
            try:
                if time.monotonic() - asked > cluster.lease_s / 3:  # keep the owner sending
                    await cluster.redis.publish(cluster.control_channel(owner), watch)
                    asked = time.monotonic()
                if time.monotonic() - checked > 1.0:
                    checked = time.monotonic()
                    if await cluster.redis.exists(cluster.proc_key(owner)):
                        silent_since = None
                        if not await cluster.redis.hexists(key, run.id):  # type: ignore[misc]
                            break  # ended unseen: the stored row has its end
                    else:
                        silent_since = silent_since or time.monotonic()
                read = await cluster.waiting.xread({stream: run.last_entry}, block=500, count=20)
            except RedisError as exc:
                if silent_since is None:
                    log.warning("following a run elsewhere: Redis unreachable (%s)", exc)
                silent_since = silent_since or time.monotonic()
                read = None
                await asyncio.sleep(0.5)  # then reconnect
            if silent_since is not None and time.monotonic() - silent_since > cluster.lease_s:
                break  # its process died, or Redis stayed away: the stored row says the rest
            if apply(run, read or []):
                break
    finally:
        run.arrived.set()
        run.finished.set()
        run.changed()


def apply(run: RemoteRun, read: Any) -> bool:
    """Bring the stand-in up to date from stream entries; True when the run ended."""
    ended, last = False, None
    for _, entries in read:
        for entry_id, fields in entries:
            last = entry_id.decode()
            text = fields.get(b"end") or fields.get(b"view")
            if text is not None:
                run_wire.apply_wire(run.snapshot, text.decode())
                run.arrived.set()
            ended = ended or b"end" in fields
    if last is not None:
        run.last_entry = last
        run.changed()
    return ended
