"""Load benchmark: Parley against the direct upstream, Gradio's gr.load_chat and Open WebUI.

Run:  .venv/bin/pip install -e ".[bench]"      (gr.load_chat needs the openai package)
      .venv/bin/python -m bench.load            (~25 min; writes bench/results/load.json)
      .venv/bin/python -m bench.report          (writes the table in docs/performance.md)
Open WebUI runs when its venv exists (bench/peers/openwebui.py says how to make it).

Every system streams the same answers from one upstream process (bench/upstream.py: first
token 200 ms, 50 tokens/s, 300 tokens, one token per SSE chunk), one request per user:
- direct: the upstream itself, the limit nothing can beat;
- parley-chat: Parley's public `/chat` API event;
- parley-v1: Parley's OpenAI-compatible `POST /v1/chat/completions` (no Gradio queue);
- parley-ui: the event the browser's Send triggers (`ui.send`, Chatbot as output), then its
  `.then` refresh (`ui.after_turn`) as the browser runs it;
- parley-ui-40: the same on a conversation with 40 prior turns (opened before the clock starts);
- load-chat: Gradio's own `gr.load_chat` app, the browser's chain (box → history → stream);
- openwebui: Open WebUI's `/api/chat/completions`.
Gradio apps are driven through the queue protocol (bench/gradio_queue.py), not gradio_client.

Arrival patterns: `burst` (every user joins at once) and `ramp` (users join evenly over 10 s),
at 1, 10, 50 and 100 users. Per request: time to the first token, tokens seen, time to the
last token. Per run: the server's CPU seconds (its whole process tree, from /proc) and its
peak RSS (sampled every 100 ms). Each system runs in a fresh process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import gradio_queue as gq
from bench.procfs import free_port, rss_kb
from bench.report import percentile
from bench.upstream import WORDS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "load.json"
PYTHON = sys.executable
MODEL = "bench/model"
PROMPT = "Tell me a long story about a quick brown fox."
VOCAB = frozenset(WORDS)
TOKENS = 300
RAMP_S = 10.0
REQUEST_TIMEOUT_S = 240.0


def machine() -> dict[str, Any]:
    """What a results file records about the machine it was measured on."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def count_tokens(text: str) -> int:
    """The upstream's answer is words from WORDS: count those (figures lines don't count)."""
    return sum(1 for word in text.split() if word in VOCAB)


# -- processes ------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessTree:
    """CPU and memory of a server process and every process under it, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def pids(self) -> list[int]:
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as children:
                        todo += [int(child) for child in children.read().split()]
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLOCK_TICKS

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, RuntimeError):
                total += rss_kb(pid) * 1024
        return total


@contextlib.contextmanager
def server(
    name: str,
    command: list[str],
    env: dict[str, str],
    health: str,
    logs: Path,
    timeout: float = 60.0,
) -> Iterator[ProcessTree]:
    """Start a server process, wait until `health` answers 200, stop it afterwards."""
    log = open(logs / f"{name}.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer {health} within {timeout:.0f} s")
            time.sleep(0.2)
        yield ProcessTree(process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


# -- systems --------------------------------------------------------------------------------


@dataclass
class System:
    """How one system streams an answer; `stream` yields the token count seen so far."""

    name: str
    tree: ProcessTree | None

    async def prepare(self, client: httpx.AsyncClient, users: int) -> list[Any]:
        """Untimed per-user set-up before the run's clock starts (e.g. open a conversation)."""
        return [None] * users

    def stream(self, client: httpx.AsyncClient, context: Any) -> AsyncIterator[int]:
        raise NotImplementedError

    async def finish(self, client: httpx.AsyncClient, context: Any) -> None:
        """Work the client does after the answer (e.g. the browser's `.then` refresh)."""


@dataclass
class OpenAIStream(System):
    """An OpenAI-style SSE endpoint: the upstream itself, or Open WebUI's API."""

    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    model: str = MODEL

    async def stream(self, client: httpx.AsyncClient, context: Any) -> AsyncIterator[int]:
        body = {
            "model": self.model,
            "stream": True,
            "messages": [{"role": "user", "content": PROMPT}],
        }
        seen = 0
        async with client.stream("POST", self.url, json=body, headers=self.headers) as answer:
            if answer.status_code != 200:
                raise RuntimeError(f"HTTP {answer.status_code}: {(await answer.aread())[:200]!r}")
            async for line in answer.aiter_lines():
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[5:])
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        seen += count_tokens(content)
                        yield seen


@dataclass
class GradioChat(System):
    """A Gradio event streaming an answer, driven through the queue protocol."""

    base: str = ""
    event: gq.Event | None = None
    inputs: list[Any] = field(default_factory=list)
    text_of: gq.TextOf = gq.plain_text(0)
    after: gq.Event | None = None
    after_inputs: list[Any] = field(default_factory=list)
    before: list[tuple[gq.Event, list[Any]]] = field(default_factory=list)
    conversations: list[tuple[str, str]] = field(default_factory=list)  # (id, title) per user
    open_event: gq.Event | None = None
    sidebar_event: gq.Event | None = None
    then: list[tuple[gq.Event, list[Any]]] = field(default_factory=list)  # after `after`

    async def prepare(self, client: httpx.AsyncClient, users: int) -> list[Any]:
        sessions = [gq.new_session() for _ in range(users)]
        if self.open_event is not None:
            if len(self.conversations) < users:
                raise RuntimeError("not enough seeded conversations left")
            opened, self.conversations = self.conversations[:users], self.conversations[users:]
            assert self.sidebar_event is not None
            for session, (conversation, title) in zip(sessions, opened, strict=True):
                # As the page does: the sidebar lists it (searched by its title), then a click.
                await gq.call(client, self.base, session, self.sidebar_event, [None, title])
                await gq.call(client, self.base, session, self.open_event, [conversation, None])
        return sessions

    async def stream(self, client: httpx.AsyncClient, context: Any) -> AsyncIterator[int]:
        session = context
        for event, inputs in self.before:  # the browser's queue=False steps before the stream
            await gq.predict(client, self.base, session, event, inputs)
        assert self.event is not None
        seen: asyncio.Queue[int | None] = asyncio.Queue()
        feeds: list[asyncio.Task[None]] = []

        async def event_outputs() -> None:
            assert self.event is not None
            try:
                async for outputs in gq.run(
                    client, self.base, session, self.event, list(self.inputs)
                ):
                    seen.put_nowait(count_tokens(self.text_of(outputs)))
                    live = LIVE_ID.search(json.dumps(outputs[0])) if not feeds else None
                    if live:  # as the page does: the answer itself comes from the live feed
                        feeds.append(
                            asyncio.create_task(read_live(client, self.base, live.group(1), seen))
                        )
                for feed in feeds:
                    await feed
            finally:
                seen.put_nowait(None)

        reader = asyncio.create_task(event_outputs())
        try:
            while (count := await seen.get()) is not None:
                yield count
            await reader  # raises what the event raised
        finally:
            for task in (reader, *feeds):
                task.cancel()

    async def finish(self, client: httpx.AsyncClient, context: Any) -> None:
        if self.after is not None:
            await gq.call(client, self.base, context, self.after, list(self.after_inputs))
        for event, inputs in self.then:
            await gq.call(client, self.base, context, event, list(inputs))


LIVE_ID = re.compile(r"parley-live-([0-9a-f]{32})")
TAG = re.compile(r"<[^>]+>")


async def read_live(
    client: httpx.AsyncClient, base: str, conversation_id: str, seen: asyncio.Queue[int | None]
) -> None:
    """Read Parley's live answer feed (webapp/live_view.py) as the page does, counting the
    answer's tokens so far (its settled blocks' text and the tail)."""
    blocks, tail = "", ""
    async with client.stream("GET", f"{base}parley/live/{conversation_id}") as feed:
        async for line in feed.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event.get("done"):
                return
            if event.get("lane", 0) != 0:
                continue
            for block in event.get("blocks", ()):
                blocks += " " + TAG.sub(" ", block)
            if "tail" in event:
                tail = event["tail"]
            tail += event.get("more", "")
            seen.put_nowait(count_tokens(blocks + " " + tail))


# -- one run --------------------------------------------------------------------------------


@dataclass
class Request:
    user: int
    joined_s: float  # when the user joined, from the start of the run
    ttft_s: float | None = None  # request start → first token
    last_s: float | None = None  # request start → last token
    first_tokens: int = 0  # tokens in the first update (Gradio apps coalesce)
    tokens: int = 0
    error: str | None = None

    def rate(self) -> float | None:
        """Tokens per second after the first update."""
        if self.error or self.ttft_s is None or self.last_s is None:
            return None
        span = self.last_s - self.ttft_s
        return (self.tokens - self.first_tokens) / span if span > 0 else None


async def one_request(
    system: System, client: httpx.AsyncClient, context: Any, user: int, delay: float, clock0: float
) -> Request:
    await asyncio.sleep(delay)  # the arrival schedule
    started = time.perf_counter()
    result = Request(user, started - clock0)
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            async for seen in system.stream(client, context):
                if seen > result.tokens:
                    now = time.perf_counter() - started
                    if result.ttft_s is None:
                        result.ttft_s, result.first_tokens = now, seen
                    result.tokens, result.last_s = seen, now
            await system.finish(client, context)
    except Exception as exc:  # every failure is a result, never a crash of the run
        result.error = f"{type(exc).__name__}: {exc}"[:300]
    if result.error is None and result.tokens != TOKENS:
        result.error = f"received {result.tokens} of {TOKENS} tokens"
    return result


async def sample_rss(tree: ProcessTree | None, peak: list[int], stop: asyncio.Event) -> None:
    while tree is not None and not stop.is_set():
        peak[0] = max(peak[0], await asyncio.to_thread(tree.rss_bytes))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def run_once(system: System, pattern: str, users: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=400)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=30), limits=limits
    ) as client:
        contexts = await system.prepare(client, users)
        await asyncio.sleep(1.0)  # let the server go quiet before its CPU is read
        peak, stop = [0], asyncio.Event()
        sampler = asyncio.create_task(sample_rss(system.tree, peak, stop))
        cpu0 = system.tree.cpu_seconds() if system.tree else 0.0
        client_cpu0 = time.process_time()  # this client's own CPU (reading the streams)
        clock0 = time.perf_counter()
        delays = [0.0 if pattern == "burst" else i * RAMP_S / users for i in range(users)]
        requests = await asyncio.gather(
            *(one_request(system, client, contexts[i], i, delays[i], clock0) for i in range(users))
        )
        wall = time.perf_counter() - clock0
        cpu = (system.tree.cpu_seconds() - cpu0) if system.tree else 0.0
        client_cpu = time.process_time() - client_cpu0
        stop.set()
        await sampler
    delivered = sum(r.tokens for r in requests)
    return {
        "system": system.name,
        "pattern": pattern,
        "users": users,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "tokens": delivered,
        "client_cpu_s": round(client_cpu, 3),
        "peak_rss_mb": round(peak[0] / 2**20, 1) if system.tree else None,
        "failures": sum(1 for r in requests if r.error),
        "requests": [asdict(r) for r in requests],
    }


# -- set-up of each system ------------------------------------------------------------------


def parley_env(upstream: str, database: Path, port: int) -> dict[str, str]:
    return {
        "SILICONFLOW_BASE_URL": upstream,
        "SILICONFLOW_API_KEY": "bench-key",
        "JIEKOU_BASE_URL": upstream,
        "DEFAULT_PROVIDER": "siliconflow",
        "DEFAULT_MODEL": MODEL,
        "DATABASE_URL": f"sqlite:///{database}",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        # Every simulated user is the one local user (no sign-in): lift the per-user cap.
        "MAX_RUNS_PER_USER": "1000",
    }


def seed_long_conversations(database: Path, count: int, turns: int = 40) -> list[tuple[str, str]]:
    """`count` conversations of `turns` question/answer pairs for the local user."""
    from sqlmodel import Session

    from storage import repository as repo
    from storage.db import make_engine, migrate
    from storage.models import Conversation, Message

    engine = make_engine(f"sqlite:///{database}")
    migrate(engine)
    answer = " ".join(WORDS[k % len(WORDS)] for k in range(TOKENS))
    ids = []
    with Session(engine) as session:
        user = repo.ensure_user(session=session, username="local")
        assert user.id is not None
        start = datetime.now(UTC) - timedelta(days=1)
        for number in range(count):
            chat = Conversation(
                user_id=user.id,
                title=f"Long chat {number}",
                provider="siliconflow",
                model=MODEL,
                created_at=start,
                updated_at=start,
            )
            session.add(chat)
            parent: str | None = None
            stamp = start
            for turn in range(turns):
                for role, content in (
                    ("user", f"Question {turn}: {PROMPT}"),
                    ("assistant", answer),
                ):
                    stamp += timedelta(milliseconds=1)
                    message = Message(
                        conversation_id=chat.id,
                        user_id=user.id,
                        parent_id=parent,
                        role=role,
                        content=content,
                        provider="siliconflow",
                        model=MODEL,
                        created_at=stamp,
                        updated_at=stamp,
                    )
                    session.add(message)
                    parent = message.id
            chat.current_leaf_id, chat.updated_at = parent, stamp
            ids.append((chat.id, chat.title))
            session.commit()
    engine.dispose()
    return ids


def gradio_config(base: str) -> dict[str, Any]:
    config: dict[str, Any] = httpx.get(f"{base}config", timeout=10).json()
    return config


def parley_chat(base: str, tree: ProcessTree) -> GradioChat:
    event = gq.find_event(gradio_config(base), "chat")
    return GradioChat(
        "parley-chat",
        tree,
        base=base,
        event=event,
        inputs=[PROMPT, "", MODEL, "{}"],
        text_of=gq.plain_text(0),
    )


def parley_ui(
    base: str, tree: ProcessTree, name: str, conversations: list[tuple[str, str]] | None = None
) -> GradioChat:
    """The browser's Send: `ui.send` with every input as the page sends it by default."""
    config = gradio_config(base)
    components = {c["id"]: c for c in config["components"]}

    def default_inputs(event: gq.Event) -> list[Any]:
        """The event's inputs as the page sends them by default (the bench's model)."""
        values = []
        for component_id in config["dependencies"][event.fn_index]["inputs"]:
            component = components[component_id]
            value = component.get("props", {}).get("value")
            if component["type"] == "state":
                value = None  # the server keeps each session's state
            elif component.get("props", {}).get("label") == "Model":
                value = MODEL
            values.append(value)
        return values

    send = gq.find_event(config, "send")
    inputs = default_inputs(send)
    inputs[0] = {"text": PROMPT, "files": []}
    gauge = gq.find_event(config, "gauge")  # the context gauge, refreshed after every turn
    return GradioChat(
        name,
        tree,
        base=base,
        event=send,
        inputs=inputs,
        text_of=gq.chatbot_text(0),
        after=gq.find_event(config, "after_turn"),
        after_inputs=[None, ""],
        conversations=list(conversations or []),
        open_event=gq.find_event(config, "open") if conversations else None,
        sidebar_event=gq.find_event(config, "sidebar"),
        then=[(gauge, default_inputs(gauge))],
    )


def load_chat(base: str, tree: ProcessTree) -> GradioChat:
    """gr.load_chat's ChatInterface, as its page runs it on Enter: clear the box into a state,
    append the message to the history (both queue=False), then stream the answer."""
    config = gradio_config(base)
    save = gq.find_event(config, "_clear_and_save_textbox")
    append = gq.find_event(config, "_append_message_to_history")
    submit = gq.find_event(config, "_submit_fn")
    return GradioChat(
        "load-chat",
        tree,
        base=base,
        event=submit,
        inputs=[None, None],
        text_of=gq.chatbot_text(1),
        before=[(save, [{"text": PROMPT, "files": []}]), (append, [None, []])],
    )


# -- the whole benchmark --------------------------------------------------------------------


async def run_system(
    system: System, patterns: list[str], levels: list[int], runs: list[dict[str, Any]]
) -> None:
    # One untimed request first: imports, connection pools and caches warm up.
    await run_once(system, "burst", 1)
    for pattern in patterns:
        for users in levels:
            result = await run_once(system, pattern, users)
            runs.append(result)
            p95 = percentile(
                [r["ttft_s"] for r in result["requests"] if r["ttft_s"] is not None], 0.95
            )
            print(
                f"{system.name:13} {pattern:5} {users:3} users: "
                f"ttft p95 {p95 * 1000:7.0f} ms, cpu {result['cpu_s']:6.2f} s, "
                f"rss {result['peak_rss_mb']} MB, failures {result['failures']}",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Parley load benchmark")
    parser.add_argument(
        "--systems",
        default="direct,parley-v1,parley-chat,parley-ui,parley-ui-40,load-chat,openwebui",
    )
    parser.add_argument("--users", default="1,10,50,100")
    parser.add_argument("--patterns", default="burst,ramp")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    systems = args.systems.split(",")
    levels = [int(n) for n in args.users.split(",")]
    patterns = args.patterns.split(",")
    runs: list[dict[str, Any]] = []
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    print(f"logs and databases in {work}", flush=True)
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    with server(
        "upstream",
        [PYTHON, "-m", "bench.upstream", "--port", str(up_port)],
        {},
        f"{upstream}/models",
        work,
    ) as up_tree:
        for name in systems:
            started = time.perf_counter()
            try:
                asyncio.run(run_named(name, upstream, up_tree, work, patterns, levels, runs))
            except Exception as exc:
                notes.append(f"{name} not measured: {type(exc).__name__}: {exc}")
                print(notes[-1], flush=True)
            print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "workload": {
                    "first_token_s": 0.2,
                    "tokens_per_s": 50,
                    "tokens": TOKENS,
                    "tokens_per_chunk": 1,
                    "ramp_s": RAMP_S,
                },
                "notes": notes,
                "runs": runs,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.out}", flush=True)


async def run_named(
    name: str,
    upstream: str,
    up_tree: ProcessTree,
    work: Path,
    patterns: list[str],
    levels: list[int],
    runs: list[dict[str, Any]],
) -> None:
    system: System
    if name == "direct":
        system = OpenAIStream("direct", up_tree, url=f"{upstream}/chat/completions")
        await run_system(system, patterns, levels, runs)
        return
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    if name.startswith("parley"):
        database = work / f"{name}.db"
        conversations: list[tuple[str, str]] = []
        if name == "parley-ui-40":
            # Every user of every run opens a conversation of its own, never one a previous
            # run has already made longer (+1 for the warm-up request).
            conversations = seed_long_conversations(database, len(patterns) * sum(levels) + 1)
        command = [PYTHON, "-m", "webapp"]
        with server(
            name, command, parley_env(upstream, database, port), f"{base}healthz", work
        ) as tree:
            if name == "parley-chat":
                system = parley_chat(base, tree)
            elif name == "parley-v1":  # the OpenAI-compatible API, off Gradio's queue
                system = OpenAIStream(name, tree, url=f"{base}v1/chat/completions")
            else:
                system = parley_ui(base, tree, name, conversations)
            await run_system(system, patterns, levels, runs)
    elif name == "load-chat":
        command = [
            PYTHON,
            "-m",
            "bench.peers.load_chat_app",
            "--upstream",
            upstream,
            "--model",
            MODEL,
            "--port",
            str(port),
        ]
        with server(
            name, command, {"GRADIO_ANALYTICS_ENABLED": "False"}, f"{base}config", work
        ) as tree:
            await run_system(load_chat(base, tree), patterns, levels, runs)
    elif name == "openwebui":
        from bench.peers import openwebui

        if not openwebui.available():
            raise RuntimeError(f"no Open WebUI venv at {openwebui.OWUI_VENV}")
        with openwebui.running(upstream, port, work / "openwebui") as owui:
            tree = ProcessTree(owui.pid)
            system = OpenAIStream(
                "openwebui",
                tree,
                url=f"{owui.base_url}/api/chat/completions",
                headers={"Authorization": f"Bearer {owui.token}"},
                model=owui.model,
            )
            await run_system(system, patterns, levels, runs)
    else:
        raise ValueError(f"unknown system {name!r}")


if __name__ == "__main__":
    main()
