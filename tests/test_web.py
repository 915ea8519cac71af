"""The production server (Gradio mounted in FastAPI, /healthz, /metrics), metrics, request logs,
docker-compose.yml and the deployment guide."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import fastapi
import httpx
import pytest
import yaml
from gradio_client import Client
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from tests.conftest import free_port
from tests.fake_openai import FakeOpenAI, Reply
from webapp.config import Settings, load_settings
from webapp.observability import (
    HANDLER_NAME,
    JsonFormatter,
    Metrics,
    TurnRecord,
    configure_logging,
    log_turn,
)
from webapp.server import MAX_THREADS, Parley, build
from webapp.ui import presentation
from webapp.ui.app import CSS
from webapp.web import ServerThread, create_app, start_in_thread, uvicorn_config

ROOT = Path(__file__).resolve().parent.parent

RECORD = TurnRecord(
    user="alice",
    provider="siliconflow",
    model="Qwen/Qwen3-32B",
    status="complete",
    http_status=None,
    error_kind=None,
    prompt_tokens=12,
    completion_tokens=30,
    reasoning_tokens=7,
    ttft_s=0.42,
    duration_s=1.5,
    tool_calls=2,
    conversation_id="c0ffee00c0ffee00c0ffee00c0ffee00",
)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the rendered text, keyed by (name, sorted labels)."""
    body, _ = metrics.render()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


# ---- Metrics as a unit ----------------------------------------------------------------------


def test_a_turn_counts_request_tokens_and_timings() -> None:
    metrics = Metrics()
    metrics.observe_turn(RECORD)
    labels = {"provider": "siliconflow", "model": "Qwen/Qwen3-32B"}
    assert value(metrics, "parley_requests_total", **labels, status="complete") == 1
    assert value(metrics, "parley_tokens_total", **labels, kind="prompt") == 12
    assert value(metrics, "parley_tokens_total", **labels, kind="completion") == 30
    assert value(metrics, "parley_tokens_total", **labels, kind="reasoning") == 7
    ttft = "parley_time_to_first_token_seconds"
    assert value(metrics, f"{ttft}_count", provider="siliconflow") == 1
    assert value(metrics, f"{ttft}_sum", provider="siliconflow") == pytest.approx(0.42)
    assert value(metrics, f"{ttft}_bucket", provider="siliconflow", le="0.25") == 0
    assert value(metrics, f"{ttft}_bucket", provider="siliconflow", le="0.5") == 1
    assert value(metrics, f"{ttft}_bucket", provider="siliconflow", le="0.05") == 0
    assert value(metrics, f"{ttft}_bucket", provider="siliconflow", le="60.0") == 1
    assert value(metrics, "parley_turn_duration_seconds_sum", provider="siliconflow") == 1.5
    assert not any(name == "parley_errors_total" for name, _ in samples(metrics))

    text = metrics.render()[0].decode()
    lines = text.splitlines()
    assert (
        'parley_requests_total{model="Qwen/Qwen3-32B",provider="siliconflow",status="complete"} 1.0'
    ) in lines
    assert (
        'parley_tokens_total{kind="completion",model="Qwen/Qwen3-32B",provider="siliconflow"} 30.0'
    ) in lines
    assert 'parley_time_to_first_token_seconds_bucket{le="0.5",provider="siliconflow"} 1.0' in lines
    assert "# TYPE parley_time_to_first_token_seconds histogram" in lines
    assert "# TYPE parley_active_streams gauge" in lines
    assert metrics.render()[1].startswith("text/plain; version=")


def test_errors_are_counted_by_http_status_or_kind() -> None:
    metrics = Metrics()
    metrics.observe_turn(
        replace(
            RECORD,
            status="error",
            http_status=429,
            ttft_s=None,
            prompt_tokens=0,
            completion_tokens=0,
            reasoning_tokens=0,
        )
    )
    metrics.observe_turn(replace(RECORD, status="error", error_kind="timeout", ttft_s=None))
    metrics.observe_turn(replace(RECORD, status="error", error_kind=None, ttft_s=None))
    assert value(metrics, "parley_errors_total", provider="siliconflow", status="429") == 1
    assert value(metrics, "parley_errors_total", provider="siliconflow", status="timeout") == 1
    assert value(metrics, "parley_errors_total", provider="siliconflow", status="unknown") == 1
    assert (
        value(
            metrics,
            "parley_requests_total",
            provider="siliconflow",
            model="Qwen/Qwen3-32B",
            status="error",
        )
        == 3
    )
    assert (
        value(metrics, "parley_time_to_first_token_seconds_count", provider="siliconflow") is None
    )  # no first token, no observation


def test_refused_and_stopped_turns() -> None:
    metrics = Metrics()
    metrics.observe_turn(replace(RECORD, status="refused", ttft_s=None, duration_s=0.0))
    metrics.observe_turn(replace(RECORD, status="stopped", duration_s=4.0))
    common = {"provider": "siliconflow", "model": "Qwen/Qwen3-32B"}
    assert value(metrics, "parley_requests_total", **common, status="refused") == 1
    assert value(metrics, "parley_requests_total", **common, status="stopped") == 1
    # Refused turns never reached a provider: they do not skew the duration histogram.
    assert value(metrics, "parley_turn_duration_seconds_count", provider="siliconflow") == 1


def test_tools_and_active_streams() -> None:
    metrics = Metrics()
    metrics.observe_tool("calculator", "ok")
    metrics.observe_tool("calculator", "ok")
    metrics.observe_tool("http_get", "timeout")
    metrics.stream_started()
    metrics.stream_started()
    metrics.stream_ended()
    assert value(metrics, "parley_tool_calls_total", tool="calculator", status="ok") == 2
    assert value(metrics, "parley_tool_calls_total", tool="http_get", status="timeout") == 1
    assert value(metrics, "parley_active_streams") == 1


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # the global registry would raise "Duplicated"
    first.observe_turn(RECORD)
    assert (
        value(
            first,
            "parley_requests_total",
            provider="siliconflow",
            model="Qwen/Qwen3-32B",
            status="complete",
        )
        == 1
    )
    assert (
        value(
            second,
            "parley_requests_total",
            provider="siliconflow",
            model="Qwen/Qwen3-32B",
            status="complete",
        )
        is None
    )


def test_label_values_are_capped() -> None:
    metrics = Metrics(max_label_values=2)
    for model in ("a", "b", "c", "d", "a"):
        metrics.observe_turn(replace(RECORD, model=model))
    models = {
        dict(labels)["model"]
        for name, labels in samples(metrics)
        if name == "parley_requests_total"
    }
    assert models == {"a", "b", "other"}
    assert (
        value(
            metrics,
            "parley_requests_total",
            provider="siliconflow",
            model="other",
            status="complete",
        )
        == 2
    )


# ---- Request log ----------------------------------------------------------------------------

LOGGED_FIELDS = {
    "user",
    "provider",
    "model",
    "status",
    "http_status",
    "error_kind",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "ttft_ms",
    "duration_ms",
    "tool_calls",
    "conversation_id",
}


def test_log_turn_writes_one_line_with_the_fields(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("webapp.test_turns")
    with caplog.at_level(logging.INFO, logger="webapp.test_turns"):
        log_turn(logger, RECORD)
    [entry] = caplog.records
    assert entry.levelno == logging.INFO and entry.getMessage() == "turn complete"
    fields = {name: getattr(entry, name) for name in LOGGED_FIELDS}
    assert fields == {
        "user": "alice",
        "provider": "siliconflow",
        "model": "Qwen/Qwen3-32B",
        "status": "complete",
        "http_status": None,
        "error_kind": None,
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "reasoning_tokens": 7,
        "ttft_ms": 420,
        "duration_ms": 1500,
        "tool_calls": 2,
        "conversation_id": RECORD.conversation_id,
    }

    parsed = json.loads(JsonFormatter().format(entry))
    assert {"time", "level", "logger", "message"} | LOGGED_FIELDS == set(parsed)
    assert parsed["level"] == "INFO" and parsed["logger"] == "webapp.test_turns"
    assert parsed["time"].endswith("+00:00")


def test_log_turn_errors_are_warnings(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("webapp.test_turns")
    with caplog.at_level(logging.INFO, logger="webapp.test_turns"):
        log_turn(logger, replace(RECORD, status="error", http_status=502, ttft_s=None))
    [entry] = caplog.records
    assert entry.levelno == logging.WARNING
    assert (entry.http_status, entry.ttft_ms) == (502, None)  # type: ignore[attr-defined]


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    httpx_level = logging.getLogger("httpx").level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(httpx_level)


def _our_handler() -> logging.StreamHandler[Any]:
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME]
    assert isinstance(handler, logging.StreamHandler)
    return handler


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_json_lines() -> None:
    configure_logging("debug", json_format=False)
    configure_logging("INFO", json_format=True)  # again: replaces, does not add
    handler = _our_handler()
    stream = io.StringIO()
    handler.setStream(stream)
    assert logging.getLogger().level == logging.INFO
    assert logging.getLogger("httpx").level == logging.WARNING

    log_turn(logging.getLogger("webapp.turns"), RECORD)
    logging.getLogger("webapp.x").info("plain %s", "line")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("webapp.x").exception("failed")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "turn complete" and first["user"] == "alice"
    assert first["ttft_ms"] == 420 and first["conversation_id"] == RECORD.conversation_id
    assert second == {
        "time": second["time"],
        "level": "INFO",
        "logger": "webapp.x",
        "message": "plain line",
    }
    assert third["level"] == "ERROR" and "ValueError: boom" in third["exception"]


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_plain_text_shows_the_fields() -> None:
    configure_logging("INFO", json_format=False)
    stream = io.StringIO()
    _our_handler().setStream(stream)
    log_turn(logging.getLogger("webapp.turns"), RECORD)
    line = stream.getvalue().strip()
    assert " INFO webapp.turns: turn complete user=alice provider=siliconflow " in line
    assert "ttft_ms=420 duration_ms=1500 tool_calls=2" in line


# ---- The mounted app ------------------------------------------------------------------------


@dataclass
class Mounted:
    parley: Parley
    metrics: Metrics
    server: ServerThread
    fake: FakeOpenAI

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path.lstrip("/"), timeout=10, **kwargs)


def start_mounted(
    fake: FakeOpenAI, db_path: Path, *, auth_dependency: Any = None, **env: str
) -> Mounted:
    values = {
        "SILICONFLOW_BASE_URL": fake.base_url,
        "SILICONFLOW_API_KEY": "test-key-siliconflow",
        "JIEKOU_BASE_URL": fake.base_url,
        "DATABASE_URL": f"sqlite:///{db_path}",
        "PORT": str(free_port()),
        "MAX_RETRIES": "2",
        **env,
    }
    settings = load_settings(values, dotenv_path=None)
    parley = build(settings)
    metrics = Metrics()
    app = create_app(parley, metrics, auth_dependency=auth_dependency)
    server = start_in_thread(app, "127.0.0.1", settings.port)
    return Mounted(parley, metrics, server, fake)


@pytest.fixture
def mounted(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[Mounted]:
    running = start_mounted(fake_openai, tmp_path / "parley.db")
    try:
        yield running
    finally:
        running.server.stop()


def test_healthz_reports_database_and_queue(mounted: Mounted) -> None:
    response = mounted.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "queue": {"pending": 0}, "runs": 0}
    assert response.headers["cache-control"] == "no-store"


def test_healthz_is_503_when_the_database_is_unreachable(mounted: Mounted, tmp_path: Path) -> None:
    mounted.parley.engine.dispose()
    mounted.parley.engine = create_engine(f"sqlite:///{tmp_path / 'removed' / 'parley.db'}")
    response = mounted.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "OperationalError (details in the server log)"


def test_healthz_is_503_when_the_queue_has_stopped(mounted: Mounted) -> None:
    mounted.parley.demo._queue.stopped = True
    response = mounted.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "ok",
        "queue": {"pending": 0, "running": False},
        "runs": 0,
    }


def test_chat_streams_through_the_mounted_app(
    mounted: Mounted, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "my confidential question 7f3a"
    answer = "An answer in several pieces, streamed through the mount."
    mounted.fake.enqueue(Reply(content=answer, chunk_chars=4, delay=0.01))
    client = Client(mounted.url, verbose=False)
    with caplog.at_level(logging.INFO):
        job = client.submit(secret, "", "", "{}", api_name="/chat")
        outputs = [tuple(o) for o in job]
        final, conversation_id = job.result()
    assert final == answer and len(conversation_id) == 32
    assert any(o[0] and o[0] != answer for o in outputs), "expected partial answers"
    assert mounted.fake.requests[-1]["json"]["messages"][-1]["content"] == secret
    # Message contents never reach the log at INFO and above.
    assert not [r for r in caplog.records if secret in r.getMessage()]

    queue = mounted.parley.demo._queue
    assert queue.max_thread_count == MAX_THREADS and len(queue.active_jobs) == MAX_THREADS
    assert queue.default_concurrency_limit is None and queue.max_size == 2000


def test_metrics_endpoint(mounted: Mounted) -> None:
    mounted.metrics.observe_turn(RECORD)
    response = mounted.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["parley_requests"].type == "counter"
    assert families["parley_tokens"].type == "counter"
    assert families["parley_time_to_first_token_seconds"].type == "histogram"
    assert families["parley_queue_pending"].samples[0].value == 0
    requests = [s for s in families["parley_requests"].samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in requests] == [
        ({"provider": "siliconflow", "model": "Qwen/Qwen3-32B", "status": "complete"}, 1.0)
    ]


def test_stop_is_prompt_with_a_page_connected(mounted: Mounted) -> None:
    # The page's /heartbeat stream stays open until the Gradio app's stop event.
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", mounted.url + "gradio_api/heartbeat/abc123") as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["x-accel-buffering"] == "no"  # nginx must not hold events back
        started = time.monotonic()
        mounted.server.stop(timeout_s=10)
        assert time.monotonic() - started < 4
    assert not mounted.server.thread.is_alive()
    assert not mounted.parley.demo.is_running  # the lifespan closed the queue


def test_production_settings_are_applied_when_mounted(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    running = start_mounted(
        fake_openai, tmp_path / "parley.db", ENV="production", MAX_UPLOAD_MB="7"
    )
    try:
        demo = running.parley.demo
        assert demo.show_error is False and demo.run_history is False
        assert demo.ssr_mode is False and demo.enable_monitoring is False
        assert demo.max_file_size == 7 * 1024 * 1024 and demo.footer_links == ["api"]
        assert demo.css == CSS + presentation.CSS and demo.max_threads == MAX_THREADS
        assert demo.head == presentation.HEAD
        page = running.get("/")
        assert page.status_code == 200 and "x-accel-buffering" not in page.headers
        assert running.get("/docs").status_code == 404  # FastAPI's own docs are off
    finally:
        running.server.stop()


def test_auth_dependency_guards_gradio_but_not_health(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    def user_from_header(request: fastapi.Request) -> str | None:
        return request.headers.get("x-forwarded-user")

    running = start_mounted(fake_openai, tmp_path / "parley.db", auth_dependency=user_from_header)
    try:
        assert running.get("/config").status_code == 401
        assert running.get("/config", headers={"X-Forwarded-User": "bob"}).status_code == 200
        assert running.get("/healthz").status_code == 200
    finally:
        running.server.stop()


def test_start_in_thread_fails_clearly_on_a_busy_port(mounted: Mounted) -> None:
    port = int(mounted.url.rsplit(":", 1)[1].rstrip("/"))
    with pytest.raises(RuntimeError, match="stopped during start-up"):
        start_in_thread(fastapi.FastAPI(), "127.0.0.1", port)


def test_uvicorn_settings_for_production() -> None:
    settings = Settings(host="0.0.0.0", port=8123, log_level="WARNING")
    config = uvicorn_config(fastapi.FastAPI(), settings)
    assert (config.host, config.port, config.log_level) == ("0.0.0.0", 8123, logging.WARNING)
    assert config.proxy_headers is True and config.forwarded_allow_ips == "127.0.0.1"
    assert config.access_log is False and config.log_config is None  # log_turn is the log
    assert config.lifespan == "on" and config.timeout_graceful_shutdown == 30
    behind = uvicorn_config(
        fastapi.FastAPI(), settings, forwarded_allow_ips="10.0.0.5", proxy_headers=False
    )
    assert behind.forwarded_allow_ips == "10.0.0.5" and behind.proxy_headers is False


# ---- docker-compose.yml and the deployment guide --------------------------------------------


def test_docker_compose_runs_the_app_against_postgres() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    app, db = compose["services"]["app"], compose["services"]["db"]

    assert app["build"] == "."
    assert app["env_file"] == [{"path": ".env", "required": False}]
    env = app["environment"]
    assert env["DATABASE_URL"] == "postgresql://parley:parley@db:5432/parley"
    assert env["HOST"] == "0.0.0.0" and env["ENV"] == "production"
    assert app["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert app["restart"] == "unless-stopped"
    assert app["stop_grace_period"] == "40s"  # answers get 30 s to finish on SIGTERM
    assert "7860:7860" in app["ports"]
    check = app["healthcheck"]["test"]
    assert check[0] == "CMD" and check[1] == "python" and "curl" not in " ".join(check)
    assert "urllib.request" in check[-1] and "/healthz" in check[-1]

    assert db["image"].startswith("postgres:15")
    assert db["environment"]["POSTGRES_USER"] == "parley"
    assert db["environment"]["POSTGRES_PASSWORD"] == "parley"
    assert db["environment"]["POSTGRES_DB"] == "parley"
    volume = db["volumes"][0].split(":")
    assert volume[1] == "/var/lib/postgresql/data" and volume[0] in compose["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


def test_the_compose_health_check_command_works(mounted: Mounted) -> None:
    import subprocess
    import sys

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    check = compose["services"]["app"]["healthcheck"]["test"]
    port = mounted.url.rsplit(":", 1)[1].rstrip("/")
    command = [sys.executable, *check[2:]]
    ok = subprocess.run(command, env={"PORT": port}, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    mounted.parley.demo._queue.stopped = True  # unhealthy: /healthz answers 503
    failing = subprocess.run(command, env={"PORT": port}, capture_output=True, timeout=30)
    assert failing.returncode != 0


def test_the_deployment_guide_covers_nginx_and_load_balancing() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "## Behind nginx" in guide and "## Several instances behind a load balancer" in guide
    for directive in (
        "proxy_pass http://127.0.0.1:7860;",
        "proxy_http_version 1.1;",
        "proxy_buffering off;",
        "proxy_cache off;",
        "proxy_read_timeout 3600s;",
        "X-Accel-Buffering",
        "client_max_body_size",
        "proxy_set_header X-Forwarded-User $remote_user;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "deploy/nginx.conf",
        "docker-compose.scale.yml",
        "REDIS_URL",
        "RUN_LEASE",
        "/healthz",
        "TRUSTED_PROXIES",
    ):
        assert directive in guide, directive


def test_the_scaled_compose_file_runs_two_replicas_behind_the_shipped_nginx() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.scale.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert services["app1"] == services["app2"]  # one definition, two replicas
    app = services["app1"]
    env = app["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://") and "@db:" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert app["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert "ports" not in app  # only nginx is reachable
    assert app["stop_grace_period"] == "40s"
    nginx = services["nginx"]
    assert nginx["volumes"] == ["./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert nginx["ports"] == ["8080:80"]
    config = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    for name in ("app1", "app2"):  # the upstreams name the compose services
        assert config.count(f"server {name}:7860") == 2
    assert "redis-cli" in " ".join(services["redis"]["healthcheck"]["test"])
