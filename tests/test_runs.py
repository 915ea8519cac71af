"""RunManager: limits, viewers, Stop, the unwatched timeout and shutdown, with real asyncio
tasks (no database or provider: the runs here are plain coroutines)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from webapp.app.error_text import user_message
from webapp.app.runs import SHUTDOWN_NOTE, Run, RunLimitReached, RunManager


class Work:
    """A run's work: counts to `steps` when released step by step, recording how it ended."""

    def __init__(self) -> None:
        self.step = asyncio.Event()
        self.count = 0
        self.ended: str | None = None
        self.finish = asyncio.Event()

    async def __call__(self, run: Run) -> None:
        try:
            while not self.finish.is_set():
                await self.step.wait()
                self.step.clear()
                self.count += 1
                run.snapshot["count"] = self.count
                run.changed()
            self.ended = "complete"
        except asyncio.CancelledError:
            self.ended = f"{run.end_state}: {user_message(run.end_note)}"
            raise


def start(
    manager: RunManager,
    user_id: int = 1,
    conversation: str = "c1",
    work: Callable[[Run], Awaitable[None]] | None = None,
) -> tuple[Run, Work]:
    job = Work()
    reservation = manager.reserve(user_id)
    run = manager.launch(reservation, conversation, {"count": 0}, work or job)  # type: ignore[arg-type]
    reservation.release()
    return run, job


async def test_a_run_outlives_its_viewer_and_a_new_viewer_sees_it_from_the_start() -> None:
    manager = RunManager()
    run, job = start(manager)
    frames: list[Any] = []
    async for _ in manager.watch([run], 0.0):
        frames.append(dict(run.snapshot))
        if len(frames) == 2:
            break  # the first viewer leaves
        job.step.set()
    assert not run.done and manager.live(1, "c1") == [run]
    job.step.set()
    seen = []
    async for last in manager.watch([run], 0.0):
        seen.append((run.snapshot["count"], last))
        if run.snapshot["count"] == 2 and not job.finish.is_set():
            job.finish.set()
            job.step.set()
    assert seen[0][0] >= 1  # the run had gone on while nobody watched
    assert seen[-1] == (3, True) and job.ended == "complete"
    assert manager.live(1, "c1") == []


async def test_changes_between_frames_are_coalesced_and_the_last_frame_is_prompt() -> None:
    manager = RunManager()
    run, job = start(manager)
    frames = 0

    async def drive() -> None:
        for _ in range(50):
            job.step.set()
            await asyncio.sleep(0)
        job.finish.set()
        job.step.set()

    driver = asyncio.create_task(drive())
    async with asyncio.timeout(5):
        async for _ in manager.watch([run], 10.0):  # a long interval: frames only at the ends
            frames += 1
    await driver
    assert frames == 2  # the first frame, then the last one at once when the run ended


async def test_a_slow_viewer_does_not_slow_the_run() -> None:
    manager = RunManager()
    run, job = start(manager)
    viewer = manager.watch([run], 0.0)
    await anext(viewer)  # subscribed, then never reads again
    for _ in range(100):
        job.step.set()
        await asyncio.sleep(0)
    assert job.count == 100
    job.finish.set()
    job.step.set()
    await manager.wait([run], 5)
    await viewer.aclose()


async def test_the_limit_per_user_counts_live_and_starting_runs() -> None:
    manager = RunManager(max_per_user=4)
    runs = [start(manager, conversation=f"c{i}")[0] for i in range(3)]
    held = manager.reserve(1)  # a fourth turn writing its rows
    with pytest.raises(RunLimitReached, match=r"4 answers streaming; at most 4 .*MAX_RUNS_PER"):
        manager.reserve(1)
    start(manager, user_id=2)  # another user is not affected
    held.release()
    held.release()  # twice is harmless
    fourth, _ = start(manager, conversation="c4")
    with pytest.raises(RunLimitReached, match="MAX_RUNS_PER_USER"):
        manager.reserve(1)
    await manager.stop(1, "c0")
    start(manager, conversation="c5")  # a slot came back
    assert runs[0].done and not fourth.done
    await manager.shutdown(0)


async def test_the_server_wide_limit() -> None:
    manager = RunManager(max_per_user=10, max_total=2)
    start(manager, user_id=1)
    start(manager, user_id=2)
    with pytest.raises(RunLimitReached, match="MAX_RUNS"):
        manager.reserve(3)
    await manager.shutdown(0)


async def test_stop_cancels_only_that_conversation_of_that_user() -> None:
    manager = RunManager()
    mine, my_job = start(manager, user_id=1, conversation="c1")
    other, _ = start(manager, user_id=2, conversation="c1")
    assert await manager.stop(2, "c-none") == 0
    assert await manager.stop(1, "c1") == 1
    assert mine.done and my_job.ended == "stopped: " and not other.done
    await manager.shutdown(0)


async def test_a_run_nobody_watches_is_stopped_after_the_timeout() -> None:
    manager = RunManager(unwatched_timeout_s=0.2)
    run, job = start(manager)
    viewer = manager.watch([run], 0.0)
    await anext(viewer)
    await viewer.aclose()  # the only viewer leaves: the clock starts
    async with asyncio.timeout(5):
        await run.finished.wait()
    assert job.ended is not None and job.ended.startswith("stopped: Stopped: nobody was watching")


async def test_a_watched_run_is_not_stopped_by_the_timeout() -> None:
    manager = RunManager(unwatched_timeout_s=0.05)
    run, job = start(manager)
    frames = 0
    async for _ in manager.watch([run], 0.01):
        frames += 1
        if frames < 30:  # ~0.3 s of watching: longer than the timeout
            await asyncio.sleep(0.01)
            job.step.set()
        elif not job.finish.is_set():
            job.finish.set()
            job.step.set()
    assert job.ended == "complete"


async def test_shutdown_gives_a_grace_period_then_saves_the_rest_as_interrupted() -> None:
    manager = RunManager()
    quick, quick_job = start(manager, conversation="quick")
    slow, slow_job = start(manager, conversation="slow")

    async def finish_quick() -> None:
        quick_job.finish.set()
        quick_job.step.set()

    asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(finish_quick()))
    await manager.shutdown(0.3)
    assert quick_job.ended == "complete"
    assert slow_job.ended == f"interrupted: {SHUTDOWN_NOTE}"
    assert quick.done and slow.done
    with pytest.raises(RunLimitReached, match="shutting down"):
        manager.reserve(1)
