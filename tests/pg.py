"""Start a throwaway PostgreSQL server for tests (initdb + pg_ctl, trust auth, loopback)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path


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


def start_postgres(tmpdir: str | Path | None = None) -> tuple[str, Callable[[], None]]:
    """Start a server in a new directory under ``tmpdir``; return its URL and a stop function.

    ``tmpdir`` must be traversable by the ``postgres`` user when running as root; the
    default (the system temp dir) is.
    """
    initdb, pg_ctl = _find_binary("initdb"), _find_binary("pg_ctl")
    base = Path(tempfile.mkdtemp(prefix="parley-pg-", dir=tmpdir))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(base, user="postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "log"
    port = _free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-k {base} -p {port} -h 127.0.0.1 -F"
    try:
        run(pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
    except subprocess.CalledProcessError as exc:
        detail = log.read_text() if log.exists() else exc.stderr.decode()
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL failed to start:\n{detail}") from exc

    def stop() -> None:
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)

    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop
