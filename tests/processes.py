"""Real `python -m webapp` processes for tests that kill, restart or run several of them, and
starting an answer through the Gradio `/chat` API."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client

from bench.soak import base_env
from tests.conftest import free_port
from tests.fake_openai import FakeOpenAI


def wait_healthy(base: str, child: subprocess.Popen[bytes], log: Path) -> None:
    """Poll a starting Parley's /healthz until it answers 200 (fail with its log if it exits
    or takes more than 90 s)."""
    deadline = time.monotonic() + 90
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        if child.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"Parley never became healthy:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)  # polling a starting server, bounded by the deadline


@contextlib.contextmanager
def parley_process(
    database_url: str, fake: FakeOpenAI, workdir: Path, log: Path, **extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m webapp` on a database, its upstream the fake; yields (process, base URL)
    once /healthz answers. Stopped with SIGTERM on the way out if still running."""
    port = free_port()
    env = base_env() | {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "SILICONFLOW_BASE_URL": fake.base_url,
        "SILICONFLOW_API_KEY": "test-key",
        "JIEKOU_BASE_URL": fake.base_url,
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    base = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "webapp"],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(base, child, log)
        yield child, base
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)


def started(client: Client, question: str, words: int = 1) -> tuple[Any, str, str]:
    """Submit a /chat and read until `words` words of the answer have arrived; returns the job
    (iterating it again goes on from there), the conversation id and the text so far."""
    job = client.submit(question, "", "", "{}", api_name="/chat")
    for text, conversation_id in job:
        if len(text.split()) >= words:
            return job, conversation_id, text
    raise AssertionError(f"the answer ended before {words} words: {job.outputs()[-1]}")
