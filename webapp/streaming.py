"""Coalescing a fast event stream into batches at most every `interval` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


async def batched(source: AsyncIterator[T], interval: float) -> AsyncGenerator[list[T], None]:
    """Yield the events of `source` in batches, no more often than every `interval` seconds.

    A batch is also flushed when the source goes quiet, so a stalled upstream never hides the
    text that already arrived. The source runs in its own task; closing or cancelling this
    generator cancels it at once (which closes the upstream HTTP response).
    """
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in source:
                queue.put_nowait(event)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed over to the consumer, raised there
            queue.put_nowait(exc)
        else:
            queue.put_nowait(_END)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    task = asyncio.create_task(pump())
    pending: list[T] = []
    last_flush = time.monotonic()
    try:
        while True:
            timeout = None
            if pending:
                timeout = max(0.0, last_flush + interval - time.monotonic())
            try:
                # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation (Stop)
                # when the get() completes in the same loop step.
                async with asyncio.timeout(timeout):
                    item = await queue.get()
            except TimeoutError:
                item = None
            if item is _END:
                break
            if isinstance(item, BaseException):
                if pending:  # what arrived before the failure is shown and kept
                    yield pending
                raise item
            if item is not None:
                pending.append(item)  # type: ignore[arg-type]
            if pending and time.monotonic() - last_flush >= interval:
                yield pending
                pending, last_flush = [], time.monotonic()
        if pending:
            yield pending
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
