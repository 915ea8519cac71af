"""The coalescing of streamed events (webapp/core/streaming.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from webapp.core.streaming import batched


async def test_fast_events_are_coalesced_and_nothing_is_lost() -> None:
    async def source() -> AsyncIterator[int]:
        for number in range(500):
            yield number

    batches = [batch async for batch in batched(source(), interval=10.0)]
    assert [n for batch in batches for n in batch] == list(range(500))
    assert len(batches) == 1  # all arrived within one interval: one update, not 500


async def test_a_stalled_source_still_shows_what_arrived() -> None:
    stall = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        await stall.wait()  # never set: the upstream went quiet
        yield "never"

    stream = batched(source(), interval=0.05)
    first = await asyncio.wait_for(anext(stream), timeout=5)
    assert first == ["a", "b"]
    await stream.aclose()


async def test_closing_the_consumer_cancels_the_source() -> None:
    cancelled = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    stream = batched(source(), interval=0.01)
    assert await anext(stream) == [1]
    await stream.aclose()
    await asyncio.wait_for(cancelled.wait(), timeout=5)


async def test_an_error_arrives_after_the_events_before_it() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise RuntimeError("upstream broke")

    seen: list[int] = []
    with pytest.raises(RuntimeError, match="upstream broke"):
        async for batch in batched(source(), interval=10.0):
            seen += batch
    assert seen == [1, 2]


async def test_cancelling_the_consuming_task_cancels_the_source() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            started.set()
            await asyncio.Event().wait()
            yield 0
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def consume() -> None:
        async for _ in batched(source(), interval=0.01):
            pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_stop_is_not_lost_while_events_keep_arriving() -> None:
    """On Python 3.11 asyncio.wait_for could swallow a cancel when an item was ready."""
    produced = 0

    async def source() -> AsyncIterator[int]:
        nonlocal produced
        for _ in range(3000):  # finite: a swallowed cancel shows as a normal finish
            produced += 1
            yield produced
            await asyncio.sleep(0)

    for _ in range(30):
        first_batch = asyncio.Event()

        async def consume(started: asyncio.Event) -> None:
            async for _ in batched(source(), interval=0.001):
                started.set()

        task = asyncio.create_task(consume(first_batch))
        await asyncio.wait_for(first_batch.wait(), timeout=5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled(), "the consumer ignored the cancellation"
