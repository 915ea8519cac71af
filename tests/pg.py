"""Start a throwaway PostgreSQL server for tests (initdb + pg_ctl, trust auth, loopback)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def _find_binary(name: str) -> str:
    """Locate a PostgreSQL server binary on PATH or in the Debian layout."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise PostgresUnavailable(f"PostgreSQL binary {name!r} not found (install postgresql)")


def _free_port() -> int:
    """Return a loopback TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A server on a temp directory: start, stop and restart it (same port, same data)."""

    base: Path
    port: int
    pg_ctl: str
    as_postgres: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "log"

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        """Run pg_ctl with -w (it returns once the server is up, or down); say why it failed."""
        command = [*self.as_postgres, self.pg_ctl, "-D", str(self.data), "-w", "-t", "60", *args]
        result = subprocess.run(command, check=False, capture_output=True, timeout=120)
        if check and result.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(
                f"pg_ctl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stderr.decode(errors='replace')}\n{log}"
            )

    def start(self) -> None:
        options = f"-k {self.base} -p {self.port} -h 127.0.0.1 -F"
        self._pg_ctl("-o", options, "-l", str(self.log), "start")

    def stop(self) -> None:
        """Stop fast: open sessions are terminated, as in a crash of the database host."""
        self._pg_ctl("-m", "fast", "stop")

    def restart(self) -> None:
        """Restart fast; every open connection is cut. Returns once the server accepts again."""
        self._pg_ctl("-m", "fast", "-l", str(self.log), "restart")  # -l: no inherited stdout

    def destroy(self) -> None:
        """Stop the server if running and delete its directory."""
        self._pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres_server(tmpdir: str | Path | None = None) -> PostgresServer:
    """initdb a new directory under ``tmpdir`` and start a server on a free loopback port.

    ``tmpdir`` must be traversable by the ``postgres`` user when running as root; the
    default (the system temp dir) is.
    """
    initdb, pg_ctl = _find_binary("initdb"), _find_binary("pg_ctl")
    base = Path(tempfile.mkdtemp(prefix="parley-pg-", dir=tmpdir))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(base, user="postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(base, _free_port(), pg_ctl, as_postgres)
    try:
        subprocess.run(
            [
                *as_postgres,
                initdb,
                "-D",
                str(server.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        server.start()
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{exc.stderr.decode(errors='replace')}") from exc
    except RuntimeError as exc:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL failed to start: {exc}") from exc
    return server


def start_postgres(tmpdir: str | Path | None = None) -> tuple[str, Callable[[], None]]:
    """Start a server in a new directory under ``tmpdir``; return its URL and a stop function."""
    server = start_postgres_server(tmpdir)
    return server.url, server.destroy


def create_database(server_url: str) -> str:
    """Create an empty database with a unique name on the server; return its URL."""
    name = f"t_{uuid.uuid4().hex}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(database_url: str) -> None:
    """Drop a database made by create_database, cutting any connection still open to it."""
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    finally:
        admin.dispose()
