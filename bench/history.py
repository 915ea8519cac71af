"""History at scale: opening a long conversation, a big sidebar, idle-session memory, cold start.

Run: .venv/bin/python -m bench.history   (writes bench/results/history.json, prints a table)
     .venv/bin/python -m bench.history --no-postgres   (skip the PostgreSQL pass)

Targets (2-core machine): open a 1,000-message conversation ≤ 150 ms of server time; the
sidebar of a user with 10,000 conversations ≤ 100 ms; ≤ 100 KB of RSS per idle session;
cold start ≤ 6 s. The machine runs other work at the same time: the load average is recorded
next to the numbers, and single runs are noisy (read p50 first).

1. Open. A SQLite file (in a temp dir) holds one user and one conversation of 1,000 messages:
   500 question/answer pairs of 300-800 characters with markdown and code, a third of the
   answers with reasoning, usage and timings. Each run is a fresh browser session that has
   already had its sidebar load event (the Radio only accepts a listed conversation), then:
   - in-process: `Blocks.process_api` on the real `conversations.input` event (ChatUI.open),
     the very call Gradio's queue worker makes: preprocess, the handler (database load, active
     path, rendering, version switcher, model list), then `postprocess_data` (the Chatbot's
     `postprocess` and the other outputs' updates) and the session-state bookkeeping. Also
     broken down: database load, render, postprocess alone.
   - over HTTP: the same event on `python -m webapp` (a subprocess) through the queue protocol
     (POST /gradio_api/queue/join, SSE GET /gradio_api/queue/data until process_completed);
     the client-observed latency, queue and HTTP included.
   Repeated on PostgreSQL (in-process) when its binaries are installed.
2. Sidebar. 10,000 conversations for the user (each with a question and an answer) and
   2,000 for another user; the sidebar load event (ChatUI.sidebar: the query, the Radio update
   and its postprocess) in-process and over HTTP, plus a search over titles and messages for
   information. Records how many conversations the sidebar shows.
3. Idle-session memory. `python -m webapp` in a subprocess; each session does what a browser
   tab does: GET /, opens the heartbeat stream (kept open: an idle tab holds it) and runs every
   "load" event through the queue (one SSE stream per session), then the events chained after
   them with `.then`. RSS (VmRSS) is read after 20 warm-up sessions and again after 200 more,
   once it settles. Twice: on the sidebar database (the sidebar lists 200 titles per session)
   and on an empty one.
4. Cold start. `python -m webapp` on a SQLite file that does not exist yet: time from spawn to
   the first 200 from /healthz and from GET /, median of 3.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
from gradio import state_holder
from gradio.block_function import BlockFunction
from gradio.utils import MatplotlibBackendMananger
from sqlalchemy import insert
from sqlmodel import Session

from bench.procfs import free_port, rss_kb
from storage import repository as repo
from storage.db import make_engine, migrate, session_factory, unit_of_work
from storage.models import Conversation, Message, new_id
from webapp.app.auth import LOCAL_USER
from webapp.config import load_settings
from webapp.process_tuning import freeze_startup_objects, steady_malloc
from webapp.server import Parley, build
from webapp.ui.handlers.chat import ChatUI
from webapp.ui.session import SessionState

RESULTS = Path(__file__).parent / "results" / "history.json"
PYTHON = sys.executable
TARGETS = {"open_ms": 150.0, "sidebar_ms": 100.0, "idle_session_kb": 100.0, "cold_start_s": 6.0}
OPEN_MESSAGES = 1000
SIDEBAR_CONVERSATIONS = 10_000
OTHER_USER_CONVERSATIONS = 2_000
RUNS = 30
IDLE_WARMUP, IDLE_SESSIONS = 20, 200
COLD_STARTS = 3
SEARCH_WORD = "kubernetes"  # a topic of about one question in thirteen
NO_MATCH = "no-such-word"  # the slowest search: every message is read

WORDS = (
    "the",
    "a",
    "model",
    "answer",
    "request",
    "token",
    "stream",
    "latency",
    "cache",
    "index",
    "query",
    "server",
    "client",
    "function",
    "value",
    "table",
    "column",
    "row",
    "session",
    "thread",
    "process",
    "memory",
    "buffer",
    "queue",
    "event",
    "handler",
    "response",
    "parameter",
    "config",
    "retry",
    "timeout",
    "error",
    "result",
    "list",
    "dictionary",
    "string",
    "number",
    "batch",
    "window",
    "page",
    "layout",
    "render",
    "message",
    "history",
    "branch",
    "version",
    "database",
    "migration",
    "schema",
    "transaction",
    "lock",
    "connection",
    "pool",
    "worker",
    "loop",
    "async",
    "await",
    "python",
)
TOPICS = (
    "SQLite indexes",
    "async Python",
    "Gradio queues",
    "rate limiting",
    "unit tests",
    "PostgreSQL vacuum",
    "a CSV parser",
    "Docker images",
    "TLS certificates",
    "regex backtracking",
    "kubernetes probes",
    "memory leaks",
    "JSON schemas",
)
CODE = (
    "```python\ndef {name}(items: list[int]) -> int:\n    total = 0\n    for item in items:\n"
    "        if item % 2 == 0:\n            total += item\n    return total\n```",
    "```sql\nSELECT id, title FROM conversations\nWHERE user_id = :user\n"
    "ORDER BY updated_at DESC\nLIMIT 200;\n```",
    "```bash\n.venv/bin/python -m {name} --port 7860 \\\n  --workers 2\n```",
    "```python\nasync def {name}(client):\n    async with client.stream('GET', URL) as r:\n"
    "        async for line in r.aiter_lines():\n            yield line\n```",
)


# ---- data -----------------------------------------------------------------------------------
def _sentence(rng: random.Random, low: int = 8, high: int = 18) -> str:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 4)))


def _sized(rng: random.Random, pieces: Callable[[], str]) -> str:
    """Join generated markdown pieces until the text is 300-800 characters long."""
    target = rng.randint(300, 800)
    parts: list[str] = []
    while sum(len(p) + 2 for p in parts) < target:
        piece = pieces()
        if parts and sum(len(p) + 2 for p in parts) + len(piece) > 800:
            piece = _sentence(rng)
        parts.append(piece)
    return "\n\n".join(parts)


def question(rng: random.Random) -> str:
    topic = rng.choice(TOPICS)

    def piece() -> str:
        roll = rng.random()
        if roll < 0.15:
            return rng.choice(CODE).format(name=rng.choice(WORDS))
        if roll < 0.3:
            return f"Why does `{rng.choice(WORDS)}()` fail with {topic}?"
        return _paragraph(rng)

    return f"A question about {topic}: " + _sized(rng, piece)


def answer(rng: random.Random) -> str:
    def piece() -> str:
        roll = rng.random()
        if roll < 0.2:
            return rng.choice(CODE).format(name=rng.choice(WORDS))
        if roll < 0.35:
            return "\n".join(
                f"- **{rng.choice(WORDS)}**: {_sentence(rng, 4, 9)}"
                for _ in range(rng.randint(2, 4))
            )
        if roll < 0.45:
            return f"### {rng.choice(TOPICS).capitalize()}"
        if roll < 0.5:
            return "| step | cost |\n|---|---|\n| parse | 2 ms |\n| render | 5 ms |"
        return _paragraph(rng)

    return _sized(rng, piece)


def _message_row(
    *,
    conversation_id: str,
    user_id: int,
    parent_id: str | None,
    role: str,
    content: str,
    at: datetime,
    rng: random.Random,
    reasoning: bool = False,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": new_id(),
        "conversation_id": conversation_id,
        "user_id": user_id,
        "parent_id": parent_id,
        "role": role,
        "content": content,
        "reasoning": "",
        "state": "complete",
        "provider": "",
        "model": "",
        "choice_index": 0,
        "imported": False,
        "preferred": False,
        "created_at": at,
        "updated_at": at,
    }
    if role == "assistant":
        completion = rng.randint(80, 400)
        row.update(
            provider="siliconflow",
            model="Qwen/Qwen3-32B",
            finish_reason="stop",
            usage={
                "prompt_tokens": rng.randint(200, 9000),
                "completion_tokens": completion,
                "total_tokens": completion + 500,
            },
            timings={
                "ttft_ms": rng.randint(300, 2000),
                "total_ms": 6000,
                "tokens_per_s": round(rng.uniform(20, 90), 1),
            },
        )
        if reasoning:
            row["reasoning"] = " ".join(_paragraph(rng) for _ in range(rng.randint(1, 3)))
            row["usage"]["reasoning_tokens"] = rng.randint(50, 300)
            row["timings"]["reasoning_ms"] = rng.randint(800, 9000)
    return row


def seed_long_conversation(url: str) -> str:
    """One user, one conversation of OPEN_MESSAGES messages on a single branch; its id."""
    rng = random.Random(1)
    engine = make_engine(url)
    migrate(engine)
    with unit_of_work(session_factory(engine)) as session:
        user_id = repo.ensure_user(session=session, username=LOCAL_USER).id
        assert user_id is not None
        conversation = repo.create_conversation(
            session=session,
            user_id=user_id,
            title="A long conversation",
            provider="siliconflow",
            model="Qwen/Qwen3-32B",
            parameters={"temperature": 0.7},
        )
        at = datetime.now(UTC) - timedelta(days=30)
        parent: str | None = None
        rows = []
        for index in range(OPEN_MESSAGES):
            role = "user" if index % 2 == 0 else "assistant"
            text = question(rng) if role == "user" else answer(rng)
            row = _message_row(
                conversation_id=conversation.id,
                user_id=user_id,
                parent_id=parent,
                role=role,
                content=text,
                at=at + timedelta(seconds=30 * index),
                rng=rng,
                reasoning=role == "assistant" and rng.random() < 0.33,
            )
            rows.append(row)
            parent = row["id"]
        session.execute(insert(Message), rows)
        conversation.current_leaf_id = parent
        conversation.updated_at = rows[-1]["created_at"]
        session.add(conversation)
        session.commit()
        conversation_id = conversation.id
    engine.dispose()
    return conversation_id


def seed_many_conversations(url: str) -> None:
    """SIDEBAR_CONVERSATIONS for the local user and OTHER_USER_CONVERSATIONS for another one,
    each with a question and an answer."""
    rng = random.Random(2)
    engine = make_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    with unit_of_work(session_factory(engine)) as session:
        for username, count in (
            (LOCAL_USER, SIDEBAR_CONVERSATIONS),
            ("someone-else", OTHER_USER_CONVERSATIONS),
        ):
            user_id = repo.ensure_user(session=session, username=username).id
            assert user_id is not None
            conversations, messages = [], []
            for _ in range(count):
                at = now - timedelta(minutes=rng.randint(1, 60 * 24 * 365))
                conversation_id = new_id()
                asked = _message_row(
                    conversation_id=conversation_id,
                    user_id=user_id,
                    parent_id=None,
                    role="user",
                    content=question(rng),
                    at=at,
                    rng=rng,
                )
                answered = _message_row(
                    conversation_id=conversation_id,
                    user_id=user_id,
                    parent_id=asked["id"],
                    role="assistant",
                    content=answer(rng),
                    at=at + timedelta(seconds=9),
                    rng=rng,
                )
                messages += [asked, answered]
                conversations.append(
                    {
                        "id": conversation_id,
                        "user_id": user_id,
                        "title": f"{rng.choice(TOPICS).capitalize()}: {_sentence(rng, 3, 6)}",
                        "system_prompt": "",
                        "provider": "siliconflow",
                        "model": "Qwen/Qwen3-32B",
                        "parameters": {},
                        "current_leaf_id": answered["id"],
                        "mode": "chat",
                        "created_at": at,
                        "updated_at": answered["created_at"],
                    }
                )
            session.execute(insert(Conversation), conversations)
            session.execute(insert(Message), messages)
            session.commit()
    engine.dispose()


# ---- statistics -----------------------------------------------------------------------------
def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 2),
        "p95_ms": round(percentile(seconds, 0.95) * 1000, 2),
        "min_ms": round(min(seconds) * 1000, 2),
        "runs": len(seconds),
    }


async def timed(work: Callable[[], Awaitable[Any]], runs: int = RUNS) -> list[float]:
    """Seconds per run of `work`, after one untimed warm-up run."""
    await work()
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        durations.append(time.perf_counter() - started)
    return durations


# ---- in-process: the real event through Blocks.process_api ----------------------------------
def app_settings(url: str, port: int = 7860) -> dict[str, str]:
    """Environment for Parley: no API keys (model lists come from the built-in catalog, so no
    request leaves the machine) and a database URL."""
    return {
        "DATABASE_URL": url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "SILICONFLOW_BASE_URL": "http://127.0.0.1:9/v1",
        "JIEKOU_BASE_URL": "http://127.0.0.1:9/v1",
        "LOG_LEVEL": "WARNING",
    }


def new_session(demo: gr.Blocks) -> state_holder.SessionState:
    """Gradio's per-session state, of the class the app configured (looked up at call time)."""
    return state_holder.SessionState(demo)


def chat_event(demo: gr.Blocks, name: str, trigger: str) -> BlockFunction:
    """The Blocks function whose handler is ChatUI.<name>, fired by a `trigger` event."""
    for block_fn in demo.fns.values():
        handler = block_fn.fn
        if (
            getattr(handler, "__name__", "") == name
            and isinstance(getattr(handler, "__self__", None), ChatUI)
            and any(event == trigger for _, event in block_fn.targets)
        ):
            return block_fn
    raise LookupError(f"no {trigger} event runs ChatUI.{name}")


@dataclass
class InProcess:
    """A built Parley (no server) and the two events measured."""

    parley: Parley
    ui: ChatUI
    open_fn: BlockFunction
    sidebar_fn: BlockFunction

    @classmethod
    def build(cls, url: str) -> InProcess:
        """Build as `python -m webapp` does (its malloc setting and frozen start-up objects)."""
        steady_malloc()
        parley = build(load_settings(app_settings(url), dotenv_path=None))
        freeze_startup_objects()
        open_fn = chat_event(parley.demo, "open", "input")
        sidebar_fn = chat_event(parley.demo, "sidebar", "change")  # the search box's
        ui = open_fn.fn.__self__  # type: ignore[union-attr]
        return cls(parley, ui, open_fn, sidebar_fn)

    async def event(
        self,
        block_fn: BlockFunction,
        inputs: list[Any],
        session: state_holder.SessionState,
        session_hash: str,
    ) -> dict[str, Any]:
        """One event as the queue worker runs it (gradio.route_utils.call_process_api)."""
        with MatplotlibBackendMananger():
            return await self.parley.demo.process_api(
                block_fn=block_fn,
                inputs=inputs,
                state=session,
                request=gr.Request(session_hash=session_hash),
                session_hash=session_hash,
                event_id=uuid.uuid4().hex,
                in_event_listener=True,
            )

    async def fresh_session(self) -> tuple[state_holder.SessionState, str]:
        """A new browser session whose sidebar has loaded (as a page does before any click)."""
        session, session_hash = new_session(self.parley.demo), uuid.uuid4().hex
        await self.event(self.sidebar_fn, [None, ""], session, session_hash)
        return session, session_hash

    def close(self) -> None:
        self.parley.engine.dispose()


async def measure_open(url: str, conversation_id: str) -> dict[str, Any]:
    app = InProcess.build(url)
    ui = app.ui
    try:
        sessions: list[tuple[state_holder.SessionState, str]] = []
        for _ in range(RUNS + 1):
            sessions.append(await app.fresh_session())
        pending = iter(sessions)
        shown: list[int] = []

        async def open_event() -> None:
            session, session_hash = next(pending)
            result = await app.event(app.open_fn, [conversation_id, None], session, session_hash)
            shown.append(len(result["data"][0]["value"]))

        total = await timed(open_event)
        user_id = (await ui.identity.person(None)).user_id
        loaded = await ui._load(user_id, conversation_id)
        durations_load = await timed(lambda: ui._load(user_id, conversation_id))

        async def render() -> None:
            ui._view(SessionState(), *loaded).chatbot()

        durations_render = await timed(render)
        prediction = await ui.open(conversation_id, SessionState(), gr.Request())
        post_sessions = [(await app.fresh_session())[0] for _ in range(RUNS + 1)]
        post_pending = iter(post_sessions)

        async def postprocess() -> None:
            await app.parley.demo.postprocess_data(
                app.open_fn, list(prediction), next(post_pending)
            )

        durations_post = await timed(postprocess)
        view = ui._view(SessionState(), *loaded)
        return {
            "stored_messages": len(loaded[1]),
            "chatbot_items_shown": shown[0],
            "chatbot_payload_kb": round(len(json.dumps(view.messages)) / 1024, 1),
            "event_in_process": summary_ms(total),
            "breakdown": {
                "database_load": summary_ms(durations_load),
                "render_view": summary_ms(durations_render),
                "gradio_postprocess": summary_ms(durations_post),
            },
        }
    finally:
        app.close()


async def measure_sidebar(url: str) -> dict[str, Any]:
    app = InProcess.build(url)
    ui = app.ui
    try:
        sessions = [(new_session(app.parley.demo), uuid.uuid4().hex) for _ in range(RUNS + 1)]
        pending = iter(sessions)
        shown: list[int] = []

        async def sidebar_event() -> None:
            session, session_hash = next(pending)
            result = await app.event(app.sidebar_fn, [None, ""], session, session_hash)
            shown.append(len(result["data"][0]["choices"]))

        total = await timed(sidebar_event)
        user_id = (await ui.identity.person(None)).user_id
        engine = app.parley.engine

        def query(text: str = "") -> int:
            with Session(engine) as session:
                return len(repo.list_conversations(session=session, user_id=user_id, query=text))

        durations_query = await timed(lambda: asyncio.to_thread(query))
        prediction = await ui.sidebar(SessionState(), "", gr.Request())
        post_pending = iter([new_session(app.parley.demo) for _ in range(RUNS + 1)])

        async def postprocess() -> None:
            await app.parley.demo.postprocess_data(app.sidebar_fn, prediction, next(post_pending))

        durations_post = await timed(postprocess)
        searches: dict[str, Any] = {}
        for word in (SEARCH_WORD, NO_MATCH):
            found = query(word)
            durations = await timed(functools.partial(asyncio.to_thread, query, word), runs=10)
            searches[word] = {"conversations_found": found, **summary_ms(durations)}
        with Session(engine) as session:
            total_owned = repo.count_conversations(session=session, user_id=user_id)
        return {
            "conversations_of_user": total_owned,
            "conversations_shown": shown[0],
            "event_in_process": summary_ms(total),
            "breakdown": {
                "query": summary_ms(durations_query),
                "gradio_postprocess": summary_ms(durations_post),
            },
            "search": searches,
        }
    finally:
        app.close()


# ---- over HTTP: the queue protocol against `python -m webapp` -------------------------------
@dataclass
class Server:
    """`python -m webapp` in a subprocess (started by this bench, stopped by its pid)."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    @contextlib.contextmanager
    def running(cls, database_url: str, folder: Path) -> Iterator[Server]:
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(folder),
            **app_settings(database_url, port),
        }
        log = folder / f"server-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [PYTHON, "-m", "webapp"], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        server = cls(process, f"http://127.0.0.1:{port}/", log)
        try:
            server.wait_healthy()
            yield server
        finally:
            process.terminate()
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("the server did not become healthy")


@dataclass
class Dependency:
    """One event of the page, as GET /config describes it."""

    fn_index: int
    inputs: list[int]
    trigger_id: int | None
    trigger: str  # "load", "click", "then", ...
    after: int | None


@dataclass
class PageConfig:
    dependencies: dict[int, Dependency]
    defaults: dict[int, Any]  # the value the page would send for each component
    by_elem_id: dict[str, int]

    @classmethod
    def fetch(cls, client: httpx.Client, url: str) -> PageConfig:
        config = client.get(url + "config").raise_for_status().json()
        defaults: dict[int, Any] = {}
        by_elem_id: dict[str, int] = {}
        for component in config["components"]:
            props = component.get("props", {})
            value = props.get("value")
            if component["type"] in ("state",):
                value = None
            elif component["type"] == "browserstate":
                value = props.get("default_value")
            elif component["type"] == "textbox" and value is None:
                value = ""
            defaults[component["id"]] = value
            if props.get("elem_id"):
                by_elem_id[props["elem_id"]] = component["id"]
        dependencies = {}
        for dep in config["dependencies"]:
            if not dep.get("backend_fn"):
                continue  # front-end only (js)
            target, trigger = dep["targets"][0] if dep["targets"] else (None, "")
            dependencies[dep["id"]] = Dependency(
                dep["id"], dep["inputs"], target, trigger, dep.get("trigger_after")
            )
        return cls(dependencies, defaults, by_elem_id)

    def data(self, dep: Dependency, **values: Any) -> list[Any]:
        by_id = {self.by_elem_id[k]: v for k, v in values.items()}
        return [by_id.get(i, self.defaults.get(i)) for i in dep.inputs]


@dataclass
class EventResult:
    seconds: float
    success: bool
    output: dict[str, Any] = field(default_factory=dict)


class Tab:
    """One browser session on the queue protocol: events join with POST /queue/join, and one
    SSE stream (GET /queue/data) per session carries every event's messages, as in the page."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.session_hash = uuid.uuid4().hex
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._early: dict[str, dict[str, Any]] = {}  # completed before its waiter was set
        self._reader: asyncio.Task[None] | None = None

    async def event(self, dep: Dependency, data: list[Any]) -> EventResult:
        started = time.perf_counter()
        joined = await self.client.post(
            self.url + "gradio_api/queue/join",
            json={
                "data": data,
                "event_data": None,
                "fn_index": dep.fn_index,
                "trigger_id": dep.trigger_id,
                "session_hash": self.session_hash,
            },
        )
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        if event_id in self._early:
            message = self._early.pop(event_id)
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting[event_id] = waiter
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read())
            message = await waiter
        return EventResult(
            time.perf_counter() - started, bool(message.get("success")), message.get("output") or {}
        )

    async def _read(self) -> None:
        """Read the session's stream until it closes; reopen while events are still waiting."""
        try:
            while self._waiting:
                async with self.client.stream(
                    "GET",
                    self.url + "gradio_api/queue/data",
                    params={"session_hash": self.session_hash},
                ) as stream:
                    async for line in stream.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        message = json.loads(line[5:])
                        kind, event_id = message.get("msg"), message.get("event_id")
                        if kind == "process_completed" and event_id:
                            waiter = self._waiting.pop(event_id, None)
                            if waiter is None:
                                self._early[event_id] = message
                            else:
                                waiter.set_result(message)
                        elif kind == "unexpected_error":
                            raise RuntimeError(f"queue stream failed: {message}")
                        if kind == "close_stream":
                            break
        except BaseException as exc:
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(
                        exc if isinstance(exc, Exception) else RuntimeError("stream reader stopped")
                    )
            self._waiting.clear()
            raise

    async def close(self) -> bool:
        """Stop reading; True when the stream was still open (an event never completed)."""
        if self._reader is None or self._reader.done():
            return False
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        return True


def find_dependency(
    page: PageConfig, config_deps: list[dict[str, Any]], elem_id: str, trigger: str
) -> Dependency:
    component = page.by_elem_id[elem_id]
    for dep in config_deps:
        if [component, trigger] in dep["targets"] and dep.get("backend_fn"):
            return page.dependencies[dep["id"]]
    raise LookupError(f"no {trigger} event on #{elem_id}")


def load_dependency(
    page: PageConfig, config_deps: list[dict[str, Any]], output_elem_id: str
) -> Dependency:
    """The event the page loads this component with (its only output): a load event, or
    the search box's change, which runs the same handler (the page's load chain runs the
    sidebar as a `.then` of opening the conversation in the address)."""
    component = page.by_elem_id[output_elem_id]
    for trigger in ("load", "change"):
        for dep in config_deps:
            if (
                any(t[1] == trigger for t in dep["targets"])
                and dep["outputs"] == [component]
                and dep.get("backend_fn")
            ):
                return page.dependencies[dep["id"]]
    raise LookupError(f"no load event fills #{output_elem_id}")


async def http_events(
    database_url: str, folder: Path, conversation_id: str | None
) -> dict[str, Any]:
    """Sidebar load (and opening `conversation_id`) over the queue protocol, fresh sessions."""
    with Server.running(database_url, folder) as server:
        with httpx.Client() as sync_client:
            config = sync_client.get(server.url + "config").raise_for_status().json()
            page = PageConfig.fetch(sync_client, server.url)
        sidebar = load_dependency(page, config["dependencies"], "conversations")
        opener = find_dependency(page, config["dependencies"], "conversations", "input")
        sidebar_times, open_times = [], []
        async with httpx.AsyncClient(timeout=30) as client:
            for run in range(RUNS + 1):
                tab = Tab(client, server.url)
                listed = await tab.event(sidebar, page.data(sidebar))
                assert listed.success, listed
                if run:
                    sidebar_times.append(listed.seconds)
                if conversation_id is None:
                    await tab.close()
                    continue
                opened = await tab.event(opener, page.data(opener, conversations=conversation_id))
                assert opened.success, opened
                if run:
                    open_times.append(opened.seconds)
                await tab.close()
        result = {"sidebar_event_http": summary_ms(sidebar_times)}
        if open_times:
            result["open_event_http"] = summary_ms(open_times)
        return result


# ---- idle sessions --------------------------------------------------------------------------
@dataclass
class Browser:
    """Opens sessions the way a tab does and keeps their heartbeat streams open."""

    url: str
    page: PageConfig
    client: httpx.AsyncClient
    heartbeats: list[asyncio.Task[None]] = field(default_factory=list)
    tabs: list[Tab] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    events_run: int = 0
    streams_left_open: int = 0

    async def _heartbeat(self, session_hash: str, ready: asyncio.Event) -> None:
        async with self.client.stream(
            "GET", f"{self.url}gradio_api/heartbeat/{session_hash}"
        ) as stream:
            ready.set()
            async for _ in stream.aiter_raw():
                pass

    async def open_tab(self) -> None:
        (await self.client.get(self.url)).raise_for_status()
        tab = Tab(self.client, self.url)
        self.tabs.append(tab)
        ready = asyncio.Event()
        self.heartbeats.append(asyncio.create_task(self._heartbeat(tab.session_hash, ready)))
        await ready.wait()
        loads = [dep for dep in self.page.dependencies.values() if dep.trigger == "load"]
        await asyncio.gather(*(self._run(tab, dep) for dep in loads))

    async def _run(self, tab: Tab, dep: Dependency) -> None:
        """An event, then the events chained after it with .then (as the page fires them)."""
        result = await tab.event(dep, self.page.data(dep))
        self.events_run += 1
        if not result.success:
            self.failures.append(f"fn {dep.fn_index}: {result.output}")
            return
        chained = [d for d in self.page.dependencies.values() if d.after == dep.fn_index]
        await asyncio.gather(*(self._run(tab, d) for d in chained))

    async def open_tabs(self, count: int, at_once: int = 8) -> None:
        limit = asyncio.Semaphore(at_once)

        async def one() -> None:
            async with limit:
                await self.open_tab()

        await asyncio.gather(*(one() for _ in range(count)))

    async def close(self) -> None:
        self.streams_left_open += sum([await tab.close() for tab in self.tabs])
        for task in self.heartbeats:
            task.cancel()
        await asyncio.gather(*self.heartbeats, return_exceptions=True)


async def settled_rss(pid: int, timeout_s: float = 30.0) -> int:
    """VmRSS once three readings a second apart agree within 0.5%."""
    readings: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        readings.append(rss_kb(pid))
        last = readings[-3:]
        if len(last) == 3 and max(last) - min(last) <= 0.005 * max(last):
            return int(statistics.median(last))
        await asyncio.sleep(1.0)
    return readings[-1]


@contextlib.asynccontextmanager
async def browser_for(server: Server) -> AsyncIterator[Browser]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=50)
    with httpx.Client() as sync_client:
        page = PageConfig.fetch(sync_client, server.url)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        browser = Browser(server.url, page, client)
        try:
            yield browser
        finally:
            await browser.close()


async def idle_memory(database_url: str, folder: Path) -> dict[str, Any]:
    with Server.running(database_url, folder) as server:
        pid = server.process.pid
        started_kb = rss_kb(pid)
        async with browser_for(server) as browser:
            await browser.open_tabs(IDLE_WARMUP)
            before = await settled_rss(pid)
            events_before = browser.events_run
            started = time.perf_counter()
            await browser.open_tabs(IDLE_SESSIONS)
            opening_s = time.perf_counter() - started
            await asyncio.sleep(2)
            after = await settled_rss(pid)
            load_events = (browser.events_run - events_before) / IDLE_SESSIONS
        return {
            "rss_at_start_mb": round(started_kb / 1024, 1),
            "rss_after_warmup_mb": round(before / 1024, 1),
            "rss_after_sessions_mb": round(after / 1024, 1),
            "sessions": IDLE_SESSIONS,
            "events_per_session": load_events,
            "per_session_kb": round((after - before) / IDLE_SESSIONS, 1),
            "seconds_to_open_sessions": round(opening_s, 1),
            "failed_events": browser.failures[:5],
            "sse_streams_left_open": browser.streams_left_open,
        }


# ---- cold start -----------------------------------------------------------------------------
def cold_start(folder: Path) -> dict[str, float]:
    """Seconds from spawning `python -m webapp` (fresh SQLite path) to 200 from /healthz and /."""
    port = free_port()
    database = folder / f"cold-{port}" / "parley.db"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(folder),
        **app_settings(f"sqlite:///{database}", port),
    }
    url = f"http://127.0.0.1:{port}/"
    first: dict[str, float] = {}
    started = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, "-m", "webapp"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(timeout=2) as client:
            while len(first) < 2 and time.perf_counter() - started < 60:
                if process.poll() is not None:
                    raise RuntimeError("the server exited during start-up")
                for name, path in (("healthz_s", "healthz"), ("page_s", "")):
                    if name in first:
                        continue
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(url + path).status_code == 200:
                            first[name] = time.perf_counter() - started
                time.sleep(0.01)
    finally:
        process.terminate()
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return first


# ---- main -----------------------------------------------------------------------------------
def postgres_urls() -> tuple[list[str], Callable[[], None]]:
    """Two empty databases on a throwaway PostgreSQL server, and the function that ends it."""
    from tests.pg import create_database, start_postgres_server

    server = start_postgres_server()
    return [create_database(server.url), create_database(server.url)], server.destroy


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    return "PASS" if value <= target else "MISS"


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    for db, block in results["databases"].items():
        opened = block["open"]["event_in_process"]
        rows.append(
            (
                f"open 1,000 msgs ({db}, in-process)",
                f"p50 {opened['p50_ms']} / p95 {opened['p95_ms']} ms",
                f"≤ {TARGETS['open_ms']:g} ms",
                verdict(opened["p95_ms"], TARGETS["open_ms"]),
            )
        )
        if "open_event_http" in block:
            http = block["open_event_http"]
            rows.append(
                (
                    f"open 1,000 msgs ({db}, HTTP queue)",
                    f"p50 {http['p50_ms']} / p95 {http['p95_ms']} ms",
                    f"≤ {TARGETS['open_ms']:g} ms",
                    verdict(http["p95_ms"], TARGETS["open_ms"]),
                )
            )
        side = block["sidebar"]["event_in_process"]
        rows.append(
            (
                f"sidebar 10k convs ({db}, in-process)",
                f"p50 {side['p50_ms']} / p95 {side['p95_ms']} ms",
                f"≤ {TARGETS['sidebar_ms']:g} ms",
                verdict(side["p95_ms"], TARGETS["sidebar_ms"]),
            )
        )
        for word, figures in block["sidebar"]["search"].items():
            rows.append(
                (
                    f"sidebar search {word!r} ({db})",
                    f"p50 {figures['p50_ms']} / p95 {figures['p95_ms']} ms",
                    "(no target)",
                    "",
                )
            )
        if "sidebar_event_http" in block:
            http = block["sidebar_event_http"]
            rows.append(
                (
                    f"sidebar 10k convs ({db}, HTTP queue)",
                    f"p50 {http['p50_ms']} / p95 {http['p95_ms']} ms",
                    f"≤ {TARGETS['sidebar_ms']:g} ms",
                    verdict(http["p95_ms"], TARGETS["sidebar_ms"]),
                )
            )
    for key, label in (
        ("idle_sessions", "RSS per idle session (200 in sidebar)"),
        ("idle_sessions_no_history", "RSS per idle session (no history)"),
    ):
        if key in results:
            idle = results[key]
            rows.append(
                (
                    label,
                    f"{idle['per_session_kb']} KB",
                    f"≤ {TARGETS['idle_session_kb']:g} KB",
                    verdict(idle["per_session_kb"], TARGETS["idle_session_kb"]),
                )
            )
    if "cold_start" in results:
        cold = results["cold_start"]
        rows.append(
            (
                "cold start to /healthz 200",
                f"{cold['healthz_median_s']} s",
                f"≤ {TARGETS['cold_start_s']:g} s",
                verdict(cold["healthz_median_s"], TARGETS["cold_start_s"]),
            )
        )
        rows.append(
            (
                "cold start to GET / 200",
                f"{cold['page_median_s']} s",
                f"≤ {TARGETS['cold_start_s']:g} s",
                verdict(cold["page_median_s"], TARGETS["cold_start_s"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows
    )


async def database_pass(
    name: str, open_url: str, sidebar_url: str, folder: Path, over_http: bool
) -> dict[str, Any]:
    conversation_id = seed_long_conversation(open_url)
    seed_many_conversations(sidebar_url)
    block: dict[str, Any] = {
        "open": await measure_open(open_url, conversation_id),
        "sidebar": await measure_sidebar(sidebar_url),
    }
    if over_http:
        block.update(await http_events(open_url, folder, conversation_id))
        block.update(
            {
                "sidebar_event_http": (await http_events(sidebar_url, folder, None))[
                    "sidebar_event_http"
                ]
            }
        )
    print(f"{name}: done", file=sys.stderr)
    return block


async def main(postgres: bool) -> None:
    results: dict[str, Any] = {
        "targets": TARGETS,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "databases": {},
    }
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        results["databases"]["sqlite"] = await database_pass(
            "sqlite",
            f"sqlite:///{folder / 'open.db'}",
            f"sqlite:///{folder / 'sidebar.db'}",
            folder,
            over_http=True,
        )
        if postgres:
            try:
                urls, stop = postgres_urls()
            except Exception as exc:  # optional: no binaries, or initdb refused
                results["postgres_skipped"] = str(exc)
            else:
                try:
                    results["databases"]["postgresql"] = await database_pass(
                        "postgresql", urls[0], urls[1], folder, over_http=False
                    )
                finally:
                    stop()
        results["idle_sessions"] = await idle_memory(f"sqlite:///{folder / 'sidebar.db'}", folder)
        results["idle_sessions_no_history"] = await idle_memory(
            f"sqlite:///{folder / 'empty.db'}", folder
        )
        starts = [cold_start(folder) for _ in range(COLD_STARTS)]
        results["cold_start"] = {
            "healthz_median_s": round(statistics.median(s["healthz_s"] for s in starts), 2),
            "page_median_s": round(statistics.median(s["page_s"] for s in starts), 2),
            "runs": [{k: round(v, 2) for k, v in s.items()} for s in starts],
        }
    results["load_average_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    print(
        f"load average {results['load_average_at_start'][0]:.2f} → "
        f"{results['load_average_at_end'][0]:.2f} on {results['cpus']} CPUs; "
        f"details in {RESULTS}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    asyncio.run(main(postgres=not parser.parse_args().no_postgres))
