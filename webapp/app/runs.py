"""Runs: generations owned by the server, with any number of viewers. No Gradio, no SQL.

A run is an asyncio task that does one generation (a chat turn, or one column of a comparison)
independent of whoever asked for it. Viewers (a page, the /chat or /attach API) subscribe and
get woken when it changes, each rendering at its own pace; a viewer that leaves only
unsubscribes. What ends a run: its own end, Stop, nobody watching for `unwatched_timeout_s`,
and shutdown. The registry lives in this process; what several processes share (each user's
run slots, Stop from any of them) goes through its `cluster` (webapp/app/cluster.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from webapp.app.cluster import Cluster
from webapp.provider.error_info import ErrorInfo

log = logging.getLogger(__name__)

SHUTDOWN_NOTE = "The server shut down while this answer was streaming; the partial answer is kept."


class RunLimitReached(Exception):
    """Starting more runs would pass a limit; the message names it and what to do."""


@dataclass(eq=False)
class Run:
    """One live generation: its snapshot (what viewers render) and its task."""

    id: str
    user_id: int
    conversation_id: str
    snapshot: Any  # a TurnUpdate: mutated by the run, read by its viewers
    kind: str = "chat"  # chat | compare (a column of a comparison)
    task: asyncio.Task[None] | None = None
    slot: str | None = None  # its run slot in the cluster (None: one process alone)
    # What a cancellation means for the row: "stopped" (Stop, nobody watching) or
    # "interrupted" (shutdown), with a note for the user.
    end_state: str = "stopped"
    end_note: ErrorInfo | str = ""  # what to tell the user when it was ended (worded later)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    _started: bool = False
    _cancel_pending: bool = False
    _wakers: set[asyncio.Event] = field(default_factory=set)
    _orphan_timer: asyncio.TimerHandle | None = None

    @property
    def done(self) -> bool:
        return self.finished.is_set()

    def changed(self) -> None:
        """Wake every viewer (called by the run after each change; cheap when they sleep)."""
        for waker in self._wakers:
            waker.set()

    @property
    def watched(self) -> bool:
        return bool(self._wakers)

    def cancel(self) -> None:
        """End the run early. A task cancelled before its first step would never run its
        work (nor the work's final save), so then the cancel waits until the work begins."""
        if self.task is None or self.done:
            return
        if self._started:
            self.task.cancel()
        else:
            self._cancel_pending = True


@dataclass(eq=False)
class Reservation:
    """Run slots held for a user while the rows of a new turn are written."""

    manager: RunManager
    user_id: int
    count: int
    slots: list[str] = field(default_factory=list)  # the cluster's, one per run to launch

    def release(self) -> None:
        """Give back the slots not used by `launch` (safe to call more than once)."""
        self.manager._release(self, self.count)
        self.manager.cluster.release(self.slots)
        self.slots = []


class RunManager:
    """The process's live runs: limits, start, viewers, Stop, the unwatched timeout, shutdown."""

    def __init__(
        self,
        *,
        max_per_user: int = 4,
        max_total: int = 500,
        unwatched_timeout_s: float = 600.0,
        cluster: Cluster | None = None,
    ) -> None:
        self.cluster = cluster or Cluster()
        self.max_per_user = max_per_user
        self.max_total = max_total
        self.unwatched_timeout_s = unwatched_timeout_s
        self._runs: dict[str, Run] = {}
        self._held: dict[int, int] = {}  # per user: live runs plus reserved slots
        self._held_total = 0
        self._closing = False

    # ---- starting ----------------------------------------------------------------------
    def reserve(self, user_id: int, count: int = 1) -> Reservation:
        """Hold `count` run slots for a user, or raise RunLimitReached naming the limit."""
        if self._closing:
            raise RunLimitReached("The server is shutting down; try again in a moment.")
        held = self._held.get(user_id, 0)
        if held + count > self.max_per_user:
            more = f" (this needs {count})" if count > 1 else ""
            raise RunLimitReached(
                f"You already have {held} answer{'s' if held != 1 else ''} streaming; at most "
                f"{self.max_per_user} can run at once (MAX_RUNS_PER_USER){more}. Wait for one "
                "to finish or stop it, then send again."
            )
        if self._held_total + count > self.max_total:
            raise RunLimitReached(
                f"The server is running its limit of {self.max_total} answers at once "
                "(MAX_RUNS); try again in a moment."
            )
        self._held[user_id] = held + count
        self._held_total += count
        return Reservation(self, user_id, count)

    async def hold(self, user_id: int, count: int = 1) -> Reservation:
        """`reserve`, and the same slots over every process of the cluster (the per-user
        limit is the deployment's, not each process's)."""
        reservation = self.reserve(user_id, count)
        try:
            reservation.slots = await self.cluster.hold(user_id, count, self.max_per_user)
        except BaseException:
            reservation.release()
            raise
        return reservation

    def launch(
        self,
        reservation: Reservation,
        conversation_id: str,
        snapshot: Any,
        work: Callable[[Run], Coroutine[Any, Any, None]],
        kind: str = "chat",
    ) -> Run:
        """Start `work(run)` as a task of its own, using one slot of `reservation`."""
        if reservation.count < 1:
            raise RuntimeError("no reserved run slot left")
        reservation.count -= 1
        run = Run(uuid.uuid4().hex, reservation.user_id, conversation_id, snapshot, kind)
        run.slot = reservation.slots.pop() if reservation.slots else None
        self._runs[run.id] = run
        self.cluster.run_started(run)
        run.task = asyncio.create_task(self._drive(run, work), name=f"run-{run.id[:8]}")
        self._arm_orphan_timer(run)  # the starter subscribes at once; if it never does, this
        return run

    async def _drive(self, run: Run, work: Callable[[Run], Coroutine[Any, Any, None]]) -> None:
        run._started = True
        if run._cancel_pending and run.task is not None:
            asyncio.get_running_loop().call_soon(run.task.cancel)  # at the work's first await
        try:
            await work(run)
        except asyncio.CancelledError:
            pass  # a stopped run ends here; its work saved its final state first
        except Exception:
            log.exception("a run failed outside its own error handling")
        finally:
            self._end(run)

    def _end(self, run: Run) -> None:
        self._runs.pop(run.id, None)
        self._release_one(run.user_id)
        if run.slot is not None:
            self.cluster.release([run.slot])
        self.cluster.run_ended(run)
        if run._orphan_timer is not None:
            run._orphan_timer.cancel()
        run.finished.set()
        run.changed()

    def _release(self, reservation: Reservation, count: int) -> None:
        for _ in range(count):
            self._release_one(reservation.user_id)
        reservation.count -= count

    def _release_one(self, user_id: int) -> None:
        held = self._held.get(user_id, 0) - 1
        if held > 0:
            self._held[user_id] = held
        else:
            self._held.pop(user_id, None)
        self._held_total = max(0, self._held_total - 1)

    # ---- looking up ----------------------------------------------------------------------
    def live(self, user_id: int, conversation_id: str | None, kind: str | None = None) -> list[Run]:
        """The user's live runs in one conversation (one for a chat, one per compare column),
        optionally only those of one `kind`."""
        if not conversation_id:
            return []
        return [
            run
            for run in self._runs.values()
            if run.user_id == user_id
            and run.conversation_id == conversation_id
            and (kind is None or run.kind == kind)
        ]

    async def find(
        self, user_id: int, conversation_id: str | None, kind: str | None = None
    ) -> list[Run]:
        """`live`, or else the user's runs of the conversation on the cluster's other
        processes (stand-ins that follow them: a viewer watches them like local ones)."""
        here = self.live(user_id, conversation_id, kind)
        if here or not conversation_id or not self.cluster.shared:
            return here
        found: list[Run] = await self.cluster.runs_elsewhere(user_id, conversation_id, kind)
        return found

    def live_for_user(self, user_id: int) -> list[Run]:
        return [run for run in self._runs.values() if run.user_id == user_id]

    def live_conversations(self, user_id: int) -> set[str]:
        """Ids of the user's conversations with a live run (the sidebar marks them)."""
        return {run.conversation_id for run in self.live_for_user(user_id)}

    def __len__(self) -> int:
        return len(self._runs)

    # ---- viewers -----------------------------------------------------------------------
    async def watch(self, runs: Sequence[Run], interval_s: float) -> AsyncGenerator[bool, None]:
        """Yield whenever the viewer should render the runs' snapshots, at most every
        `interval_s` (changes in between are coalesced) and at once when all have ended. The
        value is True on the last frame. Leaving (closing this generator) only unsubscribes."""
        waker = asyncio.Event()
        waker.set()  # the first frame at once: what the run has so far
        for run in runs:
            self._subscribe(run, waker)
        try:
            last = float("-inf")
            while True:
                await waker.wait()
                wait = last + interval_s - time.monotonic()
                if wait > 0 and not all(run.done for run in runs):
                    await _until_all_done(runs, wait)
                waker.clear()
                finished = all(run.done for run in runs)
                yield finished
                if finished:
                    return
                last = time.monotonic()
        finally:
            for run in runs:
                self._unsubscribe(run, waker)

    def _subscribe(self, run: Run, waker: asyncio.Event) -> None:
        run._wakers.add(waker)
        if run._orphan_timer is not None:
            run._orphan_timer.cancel()
            run._orphan_timer = None

    def _unsubscribe(self, run: Run, waker: asyncio.Event) -> None:
        run._wakers.discard(waker)
        if not run._wakers and not run.done:
            self._arm_orphan_timer(run)

    def _arm_orphan_timer(self, run: Run) -> None:
        if run._orphan_timer is not None:
            run._orphan_timer.cancel()
        loop = asyncio.get_running_loop()
        run._orphan_timer = loop.call_later(self.unwatched_timeout_s, self._orphaned, run)

    def _orphaned(self, run: Run) -> None:
        if run.watched or run.done or run.task is None:
            return
        log.info(
            "run %s: nobody watched for %g s, stopping it", run.id[:8], self.unwatched_timeout_s
        )
        run.end_note = ErrorInfo("unwatched", number=self.unwatched_timeout_s / 60)
        run.cancel()

    # ---- ending --------------------------------------------------------------------------
    async def stop(self, user_id: int, conversation_id: str | None, timeout_s: float = 15.0) -> int:
        """Stop the user's live runs in a conversation, here and on the cluster's other
        processes, and wait for their final saves; returns how many were stopped."""
        here = await self.stop_here(user_id, conversation_id, timeout_s)
        if not conversation_id or not self.cluster.shared:
            return here
        return here + await self.cluster.stop_elsewhere(user_id, conversation_id, timeout_s)

    async def stop_here(
        self, user_id: int, conversation_id: str | None, timeout_s: float = 15.0
    ) -> int:
        """Stop this process's live runs of the user in a conversation (and wait)."""
        runs = self.live(user_id, conversation_id)
        for run in runs:
            run.cancel()
        await self.wait(runs, timeout_s)
        return len(runs)

    async def wait(self, runs: Sequence[Run], timeout_s: float) -> bool:
        """Wait until every run has ended (its final state saved); False on timeout."""
        pending = [run.finished.wait() for run in runs if not run.done]
        if not pending:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*pending)
        except TimeoutError:
            log.warning("%d runs did not end within %g s", len(pending), timeout_s)
            return False
        return True

    async def shutdown(self, grace_s: float, save_timeout_s: float = 10.0) -> None:
        """Refuse new runs, give live ones `grace_s` to finish, then stop the rest as
        interrupted (their partial answers saved) and wait for those saves."""
        self._closing = True
        runs = list(self._runs.values())
        if not runs:
            return
        log.info("shutdown: %d answers streaming; waiting up to %g s", len(runs), grace_s)
        await self.wait(runs, grace_s)
        left = [run for run in runs if not run.done]
        for run in left:
            run.end_state, run.end_note = "interrupted", SHUTDOWN_NOTE
            run.cancel()
        if left:
            log.warning("shutdown: %d answers still streaming were saved as interrupted", len(left))
            await self.wait(left, save_timeout_s)


async def _until_all_done(runs: Sequence[Run], seconds: float) -> None:
    """Sleep up to `seconds`, waking early when every run has ended (the last frame)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            if len(runs) == 1:  # the common case, without a task per frame
                await runs[0].finished.wait()
            else:
                await asyncio.gather(*(run.finished.wait() for run in runs))
