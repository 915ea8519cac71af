"""The shipped deploy/nginx.conf run by Debian's nginx on loopback, in front of Parley
processes: for tests/test_browser_scale.py and bench/scale.py."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.procfs import free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "nginx.conf"


def nginx_config(
    prefix: Path, port: int, replicas: list[int], http_lines: str = "", workers: int = 0
) -> Path:
    """deploy/nginx.conf as shipped, listening on `port` with the replicas' loopback ports for
    app1 and app2, `http_lines` added to its http block (a log format, say), and `workers`
    worker processes instead of one per core when given."""
    text = CONFIG.read_text(encoding="utf-8")
    if workers:
        text = text.replace("worker_processes auto;", f"worker_processes {workers};")
    text = text.replace("server app1:7860", f"server 127.0.0.1:{replicas[0]}")
    text = text.replace("server app2:7860", f"server 127.0.0.1:{replicas[1]}")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    if http_lines:
        text = text.replace("http {", "http {\n    " + http_lines, 1)
    if text.count("127.0.0.1:") != 5:
        raise RuntimeError(f"{CONFIG} changed its listen or upstream lines: update {__file__}")
    config = prefix / "nginx.conf"
    config.write_text(text, encoding="utf-8")
    return config


@contextlib.contextmanager
def nginx(
    prefix: Path, replicas: list[int], http_lines: str = "", workers: int = 0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run nginx with that config from `prefix` until it answers /healthz; yields its URL
    (no trailing slash) and its process."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise RuntimeError("nginx is missing: apt-get install -y nginx")
    for name in ("", "logs", "client_body_temp", "proxy_temp"):
        (prefix / name).mkdir(parents=True, exist_ok=True)
        (prefix / name).chmod(0o777)  # nginx's workers may run as another user
    port = free_port()
    config = nginx_config(prefix, port, replicas, http_lines, workers)
    error_log = prefix / "logs" / "error.log"
    options = f"daemon off; pid {prefix / 'nginx.pid'}; error_log {error_log};"
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(config), "-g", options], start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:  # until nginx answers, bounded
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                log = error_log.read_text()[-2000:] if error_log.exists() else ""
                raise RuntimeError(f"nginx did not start: {log}")
            time.sleep(0.1)  # polling a starting server, bounded by the deadline
        yield url, process
    finally:
        process.terminate()
        process.wait(10)
