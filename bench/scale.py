"""Scale-out benchmark: Parley's `/v1` API with one process and with two behind nginx.

Run:  .venv/bin/python -m bench.scale        (~3 min; writes bench/results/scale.json)

Both set-ups are the reference deployment's (docker-compose.scale.yml) on this machine: the
shipped deploy/nginx.conf in front, REDIS_URL set, one SQLite file. "one" has nginx's two
upstream entries pointing at the same process, so the path is the same and only the number of
processes differs. The upstream is bench/upstream.py (first token 200 ms, 50 tokens/s, 300
tokens), every user one streamed request, all at once (burst), at 100 and 200 users.
Figures per run: time to first token (p50, p95), time to the last token (p95), failures, and
the CPU seconds of the Parley processes, nginx, Redis and the upstream (from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import (
    MODEL,
    PYTHON,
    ROOT,
    OpenAIStream,
    ProcessTree,
    machine,
    parley_env,
    run_once,
    server,
)
from bench.procfs import free_port
from bench.report import percentile
from tests.nginx_server import nginx
from tests.redis_server import RedisServer

RESULTS = ROOT / "bench" / "results" / "scale.json"


class Trees(ProcessTree):
    """Several process trees counted as one (the processes of one set-up)."""

    def __init__(self, trees: list[ProcessTree]) -> None:
        super().__init__(trees[0].pid)
        self.trees = trees

    def pids(self) -> list[int]:
        return [pid for tree in self.trees for pid in tree.pids()]


@contextlib.contextmanager
def proxy(work: Path, replicas: list[int]) -> Iterator[tuple[str, ProcessTree]]:
    """The shipped deploy/nginx.conf (tests/nginx_server.py) with one worker, one core's
    share, and no access log; yields its URL and its process tree."""
    prefix = work / f"nginx-{len(set(replicas))}"
    with nginx(prefix, replicas, "access_log off;", workers=1) as (url, process):
        yield f"{url}/", ProcessTree(process.pid)


async def run_setup(
    processes: int, upstream: str, work: Path, redis: RedisServer, levels: list[int]
) -> list[dict[str, Any]]:
    database = work / f"scale-{processes}.db"
    ports = [free_port() for _ in range(processes)]
    with contextlib.ExitStack() as stack:
        trees = []
        for index, port in enumerate(ports):
            env = parley_env(upstream, database, port) | {"REDIS_URL": redis.url}
            base = f"http://127.0.0.1:{port}/"
            trees.append(
                stack.enter_context(
                    server(
                        f"parley-{processes}-{index}",
                        [PYTHON, "-m", "webapp"],
                        env,
                        f"{base}healthz",
                        work,
                    )  # fmt: skip
                )
            )
        url, balancer = stack.enter_context(proxy(work, (ports * 2)[:2]))
        name = f"{processes} process{'es' if processes > 1 else ''}"
        system = OpenAIStream(name, Trees(trees), url=f"{url}v1/chat/completions")
        await run_once(system, "burst", 1)  # warm-up: imports, pools, caches
        runs = []
        for users in levels:
            proxy_cpu0 = balancer.cpu_seconds()
            result = await run_once(system, "burst", users)
            result["nginx_cpu_s"] = round(balancer.cpu_seconds() - proxy_cpu0, 3)
            runs.append(result)
            print(summary(result), flush=True)
        return runs


def summary(result: dict[str, Any]) -> str:
    ok = [r for r in result["requests"] if not r["error"]]
    ttft = [r["ttft_s"] for r in ok if r["ttft_s"] is not None]
    last = [r["last_s"] for r in ok if r["last_s"] is not None]
    return (
        f"{result['system']:11} {result['users']:3} users: ttft p50 "
        f"{percentile(ttft, 0.5) * 1000:6.0f} ms, p95 {percentile(ttft, 0.95) * 1000:6.0f} ms, "
        f"last p95 {percentile(last, 0.95):5.2f} s, parley cpu {result['cpu_s']:6.2f} s, "
        f"nginx cpu {result['nginx_cpu_s']:5.2f} s, failures {result['failures']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="100,200")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.users.split(",")]
    work = Path(tempfile.mkdtemp(prefix="parley-scale-"))
    print(f"logs and databases in {work}", flush=True)
    redis = RedisServer(work / "redis")
    redis.start()
    runs: list[dict[str, Any]] = []
    try:
        up_port = free_port()
        upstream = f"http://127.0.0.1:{up_port}/v1"
        with server(
            "upstream", [PYTHON, "-m", "bench.upstream", "--port", str(up_port)], {},
            f"{upstream}/models", work,
        ) as up_tree:  # fmt: skip
            for processes in (1, 2):
                up0 = up_tree.cpu_seconds()
                found = asyncio.run(run_setup(processes, upstream, work, redis, levels))
                for run in found:  # the upstream's CPU over the whole set-up (warm-up included)
                    run["upstream_cpu_s_setup"] = round(up_tree.cpu_seconds() - up0, 3)
                runs += found
    finally:
        redis.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "workload": {"model": MODEL, "pattern": "burst", "users": levels},
                "runs": [
                    {**{k: v for k, v in run.items() if k != "requests"}, "summary": summary(run)}
                    for run in runs
                ],
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
