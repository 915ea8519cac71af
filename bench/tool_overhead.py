"""Tool-call overhead: executor cost per call, and one tool round through the whole turn.

Run: .venv/bin/python -m bench.tool_overhead   (writes bench/results/tool_overhead.json)

1. ToolExecutor.run on calculator (a sync tool: thread pool hop, JSON parse, pydantic
   validation, result formatting), 2,000 calls one after another and 200 at once.
2. A full turn through ChatService against the fake upstream on loopback: the model asks for
   two calculator calls, then answers; time from the first request reaching the upstream to
   the second one reaching it (stream the calls back, run both tools, store the round in
   SQLite, send again), 30 turns.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from storage import repository as repo
from storage.db import make_engine, migrate, session_factory, unit_of_work
from tests.fake_openai import FakeOpenAI, Reply
from webapp.app.chat import ChatService
from webapp.app.chat_request import NewMessage, TurnSettings
from webapp.config import load_settings
from webapp.core.capabilities import CapabilityTable
from webapp.core.messages import ToolCall
from webapp.provider.client import ProviderClient, RetryPolicy
from webapp.tools.builtin import register_builtins
from webapp.tools.context import ToolContext
from webapp.tools.execute import ToolExecutor
from webapp.tools.registry import ToolRegistry

RESULTS = Path(__file__).parent / "results" / "tool_overhead.json"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def executor_costs() -> dict[str, float]:
    registry = ToolRegistry()
    register_builtins(registry)
    executor = ToolExecutor(registry)
    call = ToolCall("c", "calculator", '{"expression": "sqrt(2) * (3 + 4) ^ 2"}')
    context = ToolContext()
    timings = []
    for _ in range(2000):
        started = time.perf_counter()
        result = await executor.run(call, context)
        timings.append(time.perf_counter() - started)
    assert result.status == "done", result
    started = time.perf_counter()
    await asyncio.gather(*(executor.run(call, context) for _ in range(200)))
    burst = time.perf_counter() - started
    executor.close()
    return {
        "sequential_p50_ms": statistics.median(timings) * 1000,
        "sequential_p95_ms": percentile(timings, 0.95) * 1000,
        "burst_200_total_ms": burst * 1000,
    }


async def round_costs(fake: FakeOpenAI, folder: Path) -> dict[str, float]:
    settings = load_settings(
        {"SILICONFLOW_BASE_URL": fake.base_url, "SILICONFLOW_API_KEY": "k"}, dotenv_path=None
    )
    engine = make_engine(f"sqlite:///{folder / 'bench.db'}")
    migrate(engine)
    registry = ToolRegistry()
    register_builtins(registry)
    gaps = []
    async with httpx.AsyncClient() as http:
        clients = {
            p.name: ProviderClient(http, p, retry=RetryPolicy(max_retries=0))
            for p in settings.providers
        }
        service = ChatService(
            settings=settings,
            session_factory=session_factory(engine),
            clients=clients,
            capabilities=CapabilityTable(),
            tools=registry,
        )
        with unit_of_work(session_factory(engine)) as session:
            user_id = repo.ensure_user(session=session, username="bench").id
        assert user_id is not None
        turn = TurnSettings(provider="siliconflow", model="Qwen/Qwen3-8B", tools=("calculator",))
        for _ in range(30):
            calls = [
                {"id": "a", "name": "calculator", "arguments": '{"expression": "6*7"}'},
                {"id": "b", "name": "calculator", "arguments": '{"expression": "2^10"}'},
            ]
            fake.enqueue(
                Reply(content="", tool_calls=calls, tool_call_variant="whole"),
                Reply(content="Done."),
            )
            before = len(fake.requests)
            async for _ in service.stream_turn(
                user_id=user_id, conversation_id=None, action=NewMessage("go"), turn=turn
            ):
                pass
            assert len(fake.requests) == before + 2
            first, second = fake.requests[-2], fake.requests[-1]
            gaps.append(second["received_at"] - first["received_at"])
    engine.dispose()
    return {
        "turns": 30,
        "first_to_second_request_p50_ms": statistics.median(gaps) * 1000,
        "first_to_second_request_p95_ms": percentile(gaps, 0.95) * 1000,
    }


async def main() -> None:
    results: dict[str, object] = {"executor": await executor_costs()}
    with FakeOpenAI() as fake, tempfile.TemporaryDirectory() as folder:
        results["round"] = await round_costs(fake, Path(folder))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
