"""Engine creation, Alembic migrations, the session factory and the unit of work."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from storage.field_limits import GuardedSession

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Pooled PostgreSQL connections older than this are replaced before use: servers, proxies and
# firewalls drop idle connections, and pre-ping alone costs a failed round trip each time.
POSTGRES_POOL_RECYCLE_S = 1800
# Key of the advisory lock migrations hold on PostgreSQL, so instances starting together
# migrate one at a time ("Parley" in ASCII; any constant other users of the database avoid).
MIGRATION_LOCK_KEY = 0x5061726C6579

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)


# NUL, which PostgreSQL refuses in text, and unpaired surrogates (JSON can escape them as \ud800),
# which no database driver can encode as UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """Text every database can store and look up: NUL and unpaired surrogates become U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text) if _UNSTORABLE.search(text) else text


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {key: _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_storable(item) for item in value)
    return value


def _storable_parameters(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _executemany: bool
) -> tuple[str, Any]:
    """Every text value sent to the database, stored or looked up, the same on SQLite and
    PostgreSQL: a NUL in a message, a title or a search must not become a database error."""
    return statement, _storable(parameters)


def _normalise_url(url: str) -> str:
    """Point bare PostgreSQL URLs at the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Apply Parley's SQLite settings to a fresh DBAPI connection."""
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine: SQLite in WAL mode by default, PostgreSQL (psycopg 3) by URL."""
    url = _normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre-ping: a connection cut by a database restart is replaced, not handed out.
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=POSTGRES_POOL_RECYCLE_S)
    else:
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _set_sqlite_pragmas)
    event.listen(engine, "before_cursor_execute", _storable_parameters, retval=True)
    return engine


def alembic_config() -> Config:
    """Build the Alembic configuration in code (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    """Return the newest migration revision shipped with Parley."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """Return the database's Alembic revision, or None when unversioned."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _sqlite_file(engine: Engine) -> Path | None:
    """Return the database file of a file-backed SQLite engine, else None."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _backup_sqlite(engine: Engine, path: Path, revision: str | None) -> Path:
    """Copy a live SQLite database (WAL included) next to itself and return the copy's path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.bak-{revision or 'none'}-{stamp}")
    with engine.connect() as connection:
        source = connection.connection.driver_connection
        assert isinstance(source, sqlite3.Connection)
        destination = sqlite3.connect(target)
        try:
            source.backup(destination)
        finally:
            destination.close()
    return target


def migrate(engine: Engine) -> Path | None:
    """Upgrade the schema to head; back up an existing SQLite file first. Return the backup.

    On PostgreSQL the migration transaction first takes an advisory lock, so instances
    starting together migrate one at a time; the later ones then find the schema at head.
    """
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    backup: Path | None = None
    path = _sqlite_file(engine)
    if path is not None and path.exists():
        revision = current_revision(engine)
        if revision != head and inspect(engine).get_table_names():
            backup = _backup_sqlite(engine, path, revision)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Released at commit or rollback; waits while another instance migrates.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return backup


def session_factory(engine: Engine) -> Callable[[], Session]:
    """Return a callable that opens a new short-lived session on ``engine``."""

    def new_session() -> Session:
        """Open a session whose objects stay usable after commit (and fit the field limits)."""
        return GuardedSession(engine, expire_on_commit=False)

    return new_session


class StorageUnavailable(Exception):
    """The database did not answer (down, unreachable, or locked past the busy timeout), so
    the unit of work was rolled back and nothing of it was written. It stands for SQLAlchemy's
    OperationalError above storage/, which then needs no SQLAlchemy exceptions."""


@contextlib.contextmanager
def unit_of_work(sessions: Callable[[], Session]) -> Iterator[Session]:
    """One short session for one unit of work: it commits once at the end, or rolls back as a
    whole on an exception. Repository functions only flush, so their errors (a refused field,
    a unique name taken) still surface at the call that caused them. A database that does not
    answer surfaces as StorageUnavailable."""
    try:
        with sessions() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()
    except OperationalError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageUnavailable(first_line) from exc
