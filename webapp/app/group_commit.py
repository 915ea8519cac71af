"""Group commit: the first rows of turns that start together are written in one transaction.

A burst of requests (50 API clients at once) used to open 50 sessions in 50 threads, each one
writing a few rows and committing. SQLite has one writer: the others got SQLITE_BUSY and slept in
its busy handler (1, 2, 5, 10… ms), so the last request's upstream call went out well over
100 ms late. Here the units queue up while one batch is being written; the next batch takes all
of them in one thread hop, one session and one commit. A lone request is written at once (no
waiting for company), and nothing is sent upstream before its rows are committed.

If any unit of a batch fails, the batch is rolled back and each unit runs again alone, so one
bad request (an unknown conversation id, a limit reached) fails by itself and never takes its
neighbours' rows with it. Units must therefore be database work only: no side effects outside
the session, since a unit may run twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from sqlmodel import Session

from storage.db import unit_of_work

T = TypeVar("T")
Unit = Callable[[Session], Any]

MAX_BATCH = 100  # units per transaction: bounds one commit's size and a retry's cost


class GroupCommit:
    """Runs units of database work, committing the ones that arrive together as one."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory
        self._pending: list[tuple[Unit, asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None

    def submit(self, unit: Callable[[Session], T]) -> asyncio.Future[T]:
        """Queue `unit`; the future has its result once its batch is committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((unit, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_all())
        return future

    async def _write_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                outcomes = await asyncio.to_thread(self._write, [unit for unit, _ in batch])
            except BaseException as exc:  # the thread itself failed (shutdown): tell everyone
                outcomes = [(False, exc)] * len(batch)
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _write(self, units: list[Unit]) -> list[tuple[bool, Any]]:
        if len(units) > 1:
            try:
                with unit_of_work(self._session_factory) as session:
                    return [(True, unit(session)) for unit in units]
            except Exception:  # noqa: S110 (each unit runs again alone and reports its own error)
                pass
        outcomes: list[tuple[bool, Any]] = []
        for unit in units:
            try:
                with unit_of_work(self._session_factory) as session:
                    outcomes.append((True, unit(session)))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes
