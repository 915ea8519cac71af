"""Group commit: units that arrive together share one transaction; a failing one fails alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from storage import repository as repo
from storage.db import make_engine, migrate, session_factory, unit_of_work
from storage.models import Conversation
from webapp.app.group_commit import GroupCommit


@pytest.fixture
def factory(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'gc.db'}")
    migrate(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    make = session_factory(engine)
    with unit_of_work(make) as session:
        user = repo.ensure_user(session=session, username="ann")
    commits.clear()
    yield make, user.id, commits
    engine.dispose()


def _titles(make) -> list[str]:
    with make() as session:
        return sorted(c.title for c in session.exec(select(Conversation)))


def test_units_submitted_together_commit_once(factory) -> None:
    make, user_id, commits = factory

    async def burst() -> list[str]:
        group = GroupCommit(make)
        futures = [
            group.submit(
                lambda s, i=i: (
                    repo.create_conversation(session=s, user_id=user_id, title=f"c{i}").id
                )
            )
            for i in range(20)
        ]
        return list(await asyncio.gather(*futures))

    ids = asyncio.run(burst())
    assert len(set(ids)) == 20
    assert _titles(make) == sorted(f"c{i}" for i in range(20))
    assert len(commits) == 1  # all 20 were queued before the writer ran: one transaction


def test_a_failing_unit_fails_alone_and_its_neighbours_are_kept(factory) -> None:
    make, user_id, commits = factory

    def bad(session: Session) -> None:
        repo.create_conversation(session=session, user_id=user_id, title="half-written")
        raise repo.NotFound("Conversation x not found")

    async def burst() -> list[object]:
        group = GroupCommit(make)
        futures = [
            group.submit(
                lambda s, i=i: (
                    repo.create_conversation(session=s, user_id=user_id, title=f"ok{i}").title
                )
            )
            for i in range(3)
        ]
        futures.insert(1, group.submit(bad))
        return list(await asyncio.gather(*futures, return_exceptions=True))

    results = asyncio.run(burst())
    assert isinstance(results[1], repo.NotFound)
    assert [results[0], results[2], results[3]] == ["ok0", "ok1", "ok2"]
    assert _titles(make) == ["ok0", "ok1", "ok2"]  # the failing unit's own row is gone too


def test_units_that_arrive_while_a_batch_is_written_go_in_the_next(factory) -> None:
    make, user_id, commits = factory

    async def waves() -> None:
        group = GroupCommit(make)
        first = group.submit(
            lambda s: repo.create_conversation(session=s, user_id=user_id, title="first").id
        )
        await first
        later = [
            group.submit(
                lambda s, i=i: (
                    repo.create_conversation(session=s, user_id=user_id, title=f"later{i}").id
                )
            )
            for i in range(5)
        ]
        await asyncio.gather(*later)

    asyncio.run(waves())
    assert len(_titles(make)) == 6
    assert len(commits) == 2  # a lone unit is written at once, then the next wave together
