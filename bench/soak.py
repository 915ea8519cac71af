"""Soak: many users chatting through Gradio's queue for minutes, watching Parley's memory.

Run: .venv/bin/python -m bench.soak --minutes 10 --users 30   (writes bench/results/soak.json)

What runs, all on 127.0.0.1:
- the standalone fake upstream (``python -m tests.fake_openai``): first token after 200 ms,
  then 300 tokens at 50 tokens/s, one token per SSE chunk (~6.2 s per answer);
- Parley itself (``python -m webapp``) as a subprocess on a new SQLite file in a temp directory
  (its own working directory, so no developer ``.env`` is read);
- N users, each looping: POST /gradio_api/queue/join for the public ``/chat`` endpoint, then
  read GET /gradio_api/queue/data until the event completes (the protocol the browser speaks;
  gradio_client busy-polls and would measure itself). A user starts a new conversation every
  ``TURNS_PER_CONVERSATION`` turns, as people do, so history stays realistic.

Every answer must arrive whole (all 300 words, no "[error]"); afterwards the database must hold
every question exactly once with a complete answer and nothing left "streaming".

Memory: Parley's RSS is read from /proc/PID/status every ``--sample-s`` seconds. Growth is
measured from the end of a warm-up (the first ``warm-up`` seconds of load: a quarter of the
run, at least 10 s and at most 60 s), because the first minute legitimately grows the heap:
imports finish, SQLAlchemy and Gradio fill caches, the allocator takes arenas for 30 concurrent
streams. After that a steady workload should hold its memory flat. The default bound is 50 MB
between the mean of the first three samples after the warm-up and the mean of the last three:
far above noise (a few MB of allocator churn with this many streams) and small next to a real
leak, which at 10 minutes and 30 users (~2,700 requests) shows up once it holds ~20 KB per
request: one kept copy of each answer's text and its events is about that.

Measured on the 2-core development machine (10 min, 30 users): 2,387 requests, no errors,
RSS 180 MB idle, 204 MB after the warm-up, 212 MB at the end (flat from about 3.5 min on),
answers p50 7.3 s for a 6.2 s stream. The one-minute run (tests/test_soak.py) grew 7 MB.

Exit status 0 only when no request failed, the database check passed and the growth stayed
within the bound (1 otherwise; 2 when the servers could not start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import gradio_queue as gq
from bench.procfs import free_port, rss_kb

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "soak.json"
TOKENS = 300
TOKENS_PER_S = 50.0
FIRST_TOKEN_S = 0.2
TURNS_PER_CONVERSATION = 5
EXPECTED_ANSWER = " ".join(f"word{i}" for i in range(TOKENS))
START_TIMEOUT_S = 90.0


@dataclass
class Tally:
    requests: int = 0
    completed: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)


async def user_loop(
    index: int, http: httpx.AsyncClient, base: str, chat: gq.Event, stop_at: float, tally: Tally
) -> None:
    """One user: ask, read the whole answer, repeat until `stop_at` (monotonic)."""
    session_hash = uuid.uuid4().hex
    conversation_id = ""
    turn = 0
    while time.monotonic() < stop_at:
        if turn % TURNS_PER_CONVERSATION == 0:
            conversation_id = ""
        turn += 1
        question = f"user {index} turn {turn}"
        tally.requests += 1
        tally.questions.append(question)
        began = time.monotonic()
        first: float | None = None
        try:
            answer = ""
            async for outputs in gq.run(
                http, base, session_hash, chat, [question, conversation_id, "", "{}"]
            ):
                answer, conversation_id = str(outputs[0]), str(outputs[1])
                if first is None and answer:
                    first = time.monotonic() - began
            if answer != EXPECTED_ANSWER:
                raise gq.QueueError(f"wrong answer: {answer[-300:]!r}")
        except (gq.QueueError, httpx.HTTPError, ValueError, KeyError) as exc:
            tally.errors.append(f"{question}: {type(exc).__name__}: {exc}"[:500])
            conversation_id = ""
            continue
        tally.completed += 1
        tally.latencies.append(time.monotonic() - began)
        if first is not None:
            tally.ttfts.append(first)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
    }


async def sample_rss(
    pid: int, every_s: float, began: float, samples: list[tuple[float, float]], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        samples.append((round(time.monotonic() - began, 1), round(rss_kb(pid) / 1024, 1)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def run_load(base: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.users * 3, max_keepalive_connections=args.users * 3)
    timeout = httpx.Timeout(60.0, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        config = (await http.get(f"{base}config")).raise_for_status().json()
        chat = gq.find_event(config, "chat")
        idle_rss = rss_kb(pid) / 1024
        tally = Tally()
        samples: list[tuple[float, float]] = []
        stop = asyncio.Event()
        began = time.monotonic()
        sampler = asyncio.create_task(sample_rss(pid, args.sample_s, began, samples, stop))
        stop_at = began + args.minutes * 60
        users = [
            asyncio.create_task(user_loop(i, http, base, chat, stop_at, tally))
            for i in range(args.users)
        ]
        await asyncio.gather(*users)
        wall = time.monotonic() - began
        stop.set()
        await sampler
        samples.append((round(time.monotonic() - began, 1), round(rss_kb(pid) / 1024, 1)))
    return {"tally": tally, "samples": samples, "idle_rss": idle_rss, "wall": wall}


def memory_report(
    samples: list[tuple[float, float]], idle: float, warmup_s: float, bound_mb: float
) -> dict[str, Any]:
    """RSS before load, after warm-up and at the end; growth after warm-up against the bound."""
    steady = [mb for t, mb in samples if t >= warmup_s]
    if len(steady) < 2:
        steady = [mb for _, mb in samples[-2:]]
    head, tail = steady[:3], steady[-3:]
    start, end = statistics.fmean(head), statistics.fmean(tail)
    growth = end - start
    return {
        "idle_before_load": round(idle, 1),
        "after_warmup": round(start, 1),
        "end": round(end, 1),
        "peak": round(max(mb for _, mb in samples), 1),
        "growth_after_warmup": round(growth, 1),
        "growth_total": round(end - idle, 1),
        "warmup_s": warmup_s,
        "bound_mb": bound_mb,
        "within_bound": growth <= bound_mb,
    }


def check_database(database_url: str, questions: list[str]) -> dict[str, Any]:
    """Every question stored exactly once with one complete answer; nothing left streaming."""
    from storage import repository as repo
    from storage.db import make_engine, session_factory, unit_of_work

    engine = make_engine(database_url)
    try:
        with unit_of_work(session_factory(engine)) as session:
            user_id = repo.ensure_user(session=session, username="local").id
            assert user_id is not None
            messages = []
            for chat in repo.list_conversations(session=session, user_id=user_id, limit=1_000_000):
                messages += repo.load_messages(
                    session=session, user_id=user_id, conversation_id=chat.id
                )
    finally:
        engine.dispose()
    users = [m for m in messages if m.role == "user"]
    answers = {m.parent_id: m for m in messages if m.role == "assistant"}
    stored = [m.content for m in users]
    missing = sorted(set(questions) - set(stored))
    duplicated = sorted({q for q in stored if stored.count(q) > 1})
    unanswered = [
        m.content
        for m in users
        if m.id not in answers
        or answers[m.id].state != "complete"
        or answers[m.id].content != EXPECTED_ANSWER
    ]
    streaming = sum(m.state == "streaming" for m in messages)
    return {
        "user_messages": len(users),
        "answers": len(answers),
        "missing": missing[:10],
        "duplicated": duplicated[:10],
        "not_answered_whole": unanswered[:10],
        "left_streaming": streaming,
        "ok": not missing and not duplicated and not unanswered and not streaming,
    }


@contextlib.contextmanager
def process(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process with its output in `log`; SIGTERM (then SIGKILL) on the way out."""
    with log.open("wb") as out:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield child
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(40)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(10)


def wait_until(check: Any, what: str, child: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `check()` until true, for at most START_TIMEOUT_S, while `child` lives."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not check():
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)  # polling a starting server, bounded by the deadline


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONPATH"] = str(ROOT)
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def run(args: argparse.Namespace) -> int:
    warmup_s = max(10.0, min(60.0, args.minutes * 60 / 4))
    with tempfile.TemporaryDirectory(prefix="parley-soak-") as tmp:
        work = Path(tmp)
        fake_port, app_port = free_port(), free_port()
        fake_cmd = [
            sys.executable,
            "-m",
            "tests.fake_openai",
            "--port",
            str(fake_port),
            "--first-delay",
            str(FIRST_TOKEN_S),
            "--delay",
            str(1 / TOKENS_PER_S),
            "--chunk-words",
            "1",
            "--words",
            str(TOKENS),
        ]
        database_url = f"sqlite:///{work / 'parley.db'}"
        fake_url = f"http://127.0.0.1:{fake_port}/v1"
        env = base_env() | {
            "HOST": "127.0.0.1",
            "PORT": str(app_port),
            "DATABASE_URL": database_url,
            "SILICONFLOW_BASE_URL": fake_url,
            "SILICONFLOW_API_KEY": "soak-key",
            "JIEKOU_BASE_URL": fake_url,
            "LOG_LEVEL": "WARNING",
            # Every simulated user is the one local user (no sign-in): lift the per-user cap.
            "MAX_RUNS_PER_USER": "1000",
        }
        base = f"http://127.0.0.1:{app_port}/"
        with (
            process(fake_cmd, ROOT, base_env(), work / "fake.log") as fake,
            process([sys.executable, "-m", "webapp"], work, env, work / "parley.log") as app,
        ):
            try:
                wait_until(
                    lambda: port_open(fake_port), "the fake upstream", fake, work / "fake.log"
                )
                wait_until(lambda: healthy(f"{base}healthz"), "Parley", app, work / "parley.log")
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                return 2
            print(
                f"soak: {args.users} users for {args.minutes:g} min against Parley pid "
                f"{app.pid} ({base})",
                flush=True,
            )
            load = asyncio.run(run_load(base, app.pid, args))
        tally: Tally = load["tally"]
        database = check_database(database_url, tally.questions)
    memory = memory_report(load["samples"], load["idle_rss"], warmup_s, args.rss_bound_mb)
    result = {
        "minutes": args.minutes,
        "users": args.users,
        "workload": {
            "first_token_s": FIRST_TOKEN_S,
            "tokens": TOKENS,
            "tokens_per_s": TOKENS_PER_S,
            "tokens_per_chunk": 1,
            "turns_per_conversation": TURNS_PER_CONVERSATION,
        },
        "wall_s": round(load["wall"], 1),
        "requests": tally.requests,
        "completed": tally.completed,
        "errors": len(tally.errors),
        "error_samples": tally.errors[:5],
        "requests_per_s": round(tally.completed / load["wall"], 2) if load["wall"] else 0,
        "latency_s": summary(tally.latencies),
        "ttft_s": summary(tally.ttfts),
        "rss_mb": memory,
        "database": database,
        "rss_samples": load["samples"],
    }
    ok = not tally.errors and tally.completed > 0 and memory["within_bound"] and database["ok"]
    result["ok"] = ok
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}, indent=2))
    if not ok:
        print("soak FAILED: see errors, rss_mb.within_bound and database.ok above", file=sys.stderr)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON")
    parser.add_argument(
        "--rss-bound-mb",
        type=float,
        default=50.0,
        help="largest RSS growth allowed after the warm-up",
    )
    parser.add_argument("--sample-s", type=float, default=3.0, help="seconds between samples")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
