"""Repository fixtures shared by the storage-level tests (a pytest plugin, see conftest.py).

`call(function, **kwargs)` runs one repository function in its own short session on a migrated
database (SQLite or PostgreSQL, from `database_url`), like the app does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from storage import repository as repo
from storage.db import make_engine, migrate, session_factory, unit_of_work

Call = Callable[..., Any]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated engine."""
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def call(engine: Engine) -> Call:
    """Run one repository function in its own short session, like the app does."""
    new_session = session_factory(engine)

    def run(function: Call, **kwargs: Any) -> Any:
        with unit_of_work(new_session) as session:
            return function(session=session, **kwargs)

    return run


@pytest.fixture
def alice(call: Call) -> int:
    """The id of user "alice"."""
    return int(call(repo.ensure_user, username="alice").id)


@pytest.fixture
def bob(call: Call) -> int:
    """The id of user "bob"."""
    return int(call(repo.ensure_user, username="bob").id)
