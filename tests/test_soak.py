"""The one-minute soak, as CI runs it: 30 users through Gradio's queue, memory watched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_one_minute_soak_with_30_users_has_no_errors_and_bounded_memory(tmp_path: Path) -> None:
    results = tmp_path / "soak.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--minutes",
            "1",
            "--users",
            "30",
            "--results",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert run.returncode == 0, f"soak failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    report = json.loads(results.read_text())
    print(f"\nsoak 1 min: {report['completed']} requests, RSS {report['rss_mb']}")
    assert report["ok"] and report["errors"] == 0
    assert report["completed"] >= 30  # every user finished at least one whole answer
    assert report["database"]["user_messages"] == report["requests"]
    assert report["database"]["left_streaming"] == 0
    assert report["rss_mb"]["growth_after_warmup"] <= report["rss_mb"]["bound_mb"]
