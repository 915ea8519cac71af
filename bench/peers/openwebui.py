"""Open WebUI as a load-benchmark peer: start it against a fake upstream, stream, stop it.

Open WebUI lives in its own venv outside the repo (``OWUI_VENV``, default
/work/peers/owui-venv; about 2 minutes and 2.9 GB; shared/peers/openwebui.md has the details)::

    python3 -m venv /work/peers/owui-venv
    /work/peers/owui-venv/bin/pip install torch==2.13.0     # the local CPU build, first
    /work/peers/owui-venv/bin/pip install open-webui torch==2.13.0

Usage::

    with running("http://127.0.0.1:9100/v1", 8081, Path("/tmp/owui")) as owui:
        async with httpx.AsyncClient(timeout=None) as client:
            ttft, deltas, total, error = await stream_once(client, owui, "Hello")
        owui.pids()  # the server's process tree, for CPU and RSS

Everything stays on loopback: the environment below turns off Ollama, model downloads,
telemetry, version checks and the background generations (titles, tags, follow-ups).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

OWUI_VENV = Path(os.environ.get("OWUI_VENV", "/work/peers/owui-venv"))
STARTUP_TIMEOUT = 180.0  # seconds until GET /health answers; the first start runs migrations
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL


def executable() -> Path:
    """The venv's ``open-webui`` console script."""
    return OWUI_VENV / "bin" / "open-webui"


def available() -> bool:
    """True when the Open WebUI venv is installed."""
    exe = executable()
    return exe.is_file() and os.access(exe, os.X_OK)


def environment(upstream_base_url: str, data_dir: Path) -> dict[str, str]:
    """The process environment: ours plus every setting from shared/peers/openwebui.md."""
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{OWUI_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env |= {
        "DATA_DIR": str(data_dir),
        "WEBUI_SECRET_KEY": "bench-only-not-a-secret-0123456789abcdef",
        "WEBUI_AUTH": "False",
        "ENABLE_OLLAMA_API": "False",
        "ENABLE_OPENAI_API": "True",
        "OPENAI_API_BASE_URL": upstream_base_url,
        "OPENAI_API_KEY": "x",
        "OFFLINE_MODE": "True",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ENABLE_VERSION_UPDATE_CHECK": "False",
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_OPENAI_API_BASE_URL": upstream_base_url,
        "RAG_OPENAI_API_KEY": "x",
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "False",
        "RAG_RERANKING_MODEL_AUTO_UPDATE": "False",
        "BYPASS_EMBEDDING_AND_RETRIEVAL": "True",
        "ENABLE_RAG_HYBRID_SEARCH": "False",
        "ANONYMIZED_TELEMETRY": "False",
        "DO_NOT_TRACK": "True",
        "SCARF_NO_ANALYTICS": "True",
        "ENABLE_OTEL": "False",
        "ENABLE_TITLE_GENERATION": "False",
        "ENABLE_TAGS_GENERATION": "False",
        "ENABLE_FOLLOW_UP_GENERATION": "False",
        "ENABLE_AUTOCOMPLETE_GENERATION": "False",
    }
    return env


def _parent_pids() -> dict[int, int]:
    """pid -> parent pid for every process visible in /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat.rpartition(")")[2].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now (root first)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parent_pids().items():
        children.setdefault(ppid, []).append(pid)
    if not Path(f"/proc/{root}").exists():
        return []
    tree, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        tree.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return tree


@dataclass
class OpenWebUI:
    """A running Open WebUI: where it listens, an admin JWT, and the model to ask for."""

    base_url: str
    token: str
    pid: int
    model: str
    data_dir: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def pids(self) -> list[int]:
        """The server's whole process tree (pid first), read from /proc just now."""
        return process_tree(self.pid)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _signal_tree(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the process tree and to the process group it leads."""
    for pid in process_tree(process.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)  # started with start_new_session: the group id is its pid


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the tree, then SIGKILL whatever is left after STOP_GRACE seconds."""
    survivors = process_tree(process.pid)
    _signal_tree(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE)
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in survivors):
        time.sleep(0.1)
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _wait_healthy(
    client: httpx.Client, base_url: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"open-webui exited with {process.returncode} while starting:\n{_log_tail(log)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if client.get(f"{base_url}/health", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"open-webui not healthy after {STARTUP_TIMEOUT:.0f} s:\n{_log_tail(log)}")


def _sign_in(client: httpx.Client, base_url: str) -> str:
    response = client.post(
        f"{base_url}/api/v1/auths/signin", json={"email": "", "password": ""}, timeout=30
    )
    response.raise_for_status()
    return str(response.json()["token"])


def _pick_model(client: httpx.Client, base_url: str, token: str, timeout: float = 30) -> str:
    """The first model Open WebUI lists from the upstream (retried while the list is empty)."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    listed: list[dict[str, Any]] = []
    while True:
        response = client.get(f"{base_url}/api/models", headers=headers, timeout=30)
        response.raise_for_status()
        listed = [m for m in response.json().get("data", []) if isinstance(m, dict)]
        # only the upstream's models (Open WebUI also lists e.g. its arena model)
        upstream = [m for m in listed if m.get("owned_by") == "openai" or "openai" in m]
        if upstream:
            return str(upstream[0]["id"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"open-webui lists no upstream model: {listed}")
        time.sleep(1)


@contextlib.contextmanager
def running(upstream_base_url: str, port: int, data_dir: Path) -> Iterator[OpenWebUI]:
    """Start ``open-webui serve`` on 127.0.0.1:port against the upstream; stop it on exit.

    ``data_dir`` is wiped and recreated (Open WebUI copies the upstream URL into its database
    on first start); the server's output goes to ``data_dir/server.log``.
    """
    if not available():
        raise FileNotFoundError(f"no Open WebUI at {executable()} (set OWUI_VENV)")
    data_dir = Path(data_dir).resolve()
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    log_path = data_dir / "server.log"
    base_url = f"http://127.0.0.1:{port}"
    command = [str(executable()), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=data_dir,
            env=environment(upstream_base_url, data_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with httpx.Client(trust_env=False) as client:
            _wait_healthy(client, base_url, process, log_path)
            token = _sign_in(client, base_url)
            model = _pick_model(client, base_url, token)
        yield OpenWebUI(base_url, token, process.pid, model, data_dir, process)
    finally:
        _stop(process)


async def stream_once(
    client: httpx.AsyncClient, owui: OpenWebUI, prompt: str
) -> tuple[float | None, int, float, str | None]:
    """One streamed chat completion through Open WebUI.

    Returns (seconds to the first non-empty content delta or None, content deltas received,
    seconds to the end of the stream, error text or None), all from the request's start.
    """
    messages = [{"role": "user", "content": prompt}]
    body: dict[str, Any] = {"model": owui.model, "messages": messages, "stream": True}
    first: float | None = None
    deltas = 0
    error: str | None = None
    done = False
    started = time.perf_counter()
    try:
        async with client.stream(
            "POST", f"{owui.base_url}/api/chat/completions", json=body, headers=owui.headers
        ) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                error = f"HTTP {response.status_code}: {text[:300]}"
            else:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        continue
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("error"):
                        error = f"stream error: {json.dumps(chunk['error'])[:300]}"
                        break
                    choices = chunk.get("choices") or [{}]
                    if (choices[0].get("delta") or {}).get("content"):
                        deltas += 1
                        if first is None:
                            first = time.perf_counter() - started
                if error is None and not done:
                    error = "stream ended without [DONE]"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return first, deltas, time.perf_counter() - started, error
