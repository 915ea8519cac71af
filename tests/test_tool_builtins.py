"""Built-in tools: calculator, current_time, search_conversations and http_get (loopback only)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import operator
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from webapp.tools import calculator as calc
from webapp.tools.builtin import (
    HttpGetError,
    calculator,
    check_url,
    host_allowed,
    make_current_time,
    make_http_get,
    normalize_hosts,
    register_builtins,
    search_conversations,
)
from webapp.tools.calculator import CalculatorError, evaluate
from webapp.tools.context import ToolContext
from webapp.tools.registry import ToolRegistry

# ---------------------------------------------------------------- calculator

RESULTS = [
    ("1 + 2 * 3", "7"),
    ("(1 + 2) * 3", "9"),
    ("10 - 4 - 3", "3"),
    ("2 * -3", "-6"),
    ("-2 ** 2", "-4"),
    ("(-2) ** 2", "4"),
    ("2 ** 3 ** 2", "512"),
    ("2^10", "1024"),
    ("2^3^2", "512"),
    ("2^3 + 1", "9"),
    ("+5", "5"),
    ("--5", "5"),
    ("7 // 2", "3"),
    ("-7 // 2", "-4"),
    ("7 % 3", "1"),
    ("7 / 2", "3.5"),
    ("4 / 2", "2.0"),
    ("2 ** -2", "0.25"),
    ("0.1 + 0.2", "0.30000000000000004"),
    ("3 × 4 ÷ 8", "1.5"),
    ("5 − 7", "-2"),
    ("1_000 * 1e3", "1000000.0"),
    ("0x1f + 0b11", "34"),
    ("2 ** 64", "18446744073709551616"),
    ("10 ** 4299 // 10 ** 4298", "10"),
    ("pi", repr(math.pi)),
    ("e", repr(math.e)),
    ("tau / 2", repr(math.pi)),
    ("sqrt(16)", "4.0"),
    ("cbrt(27)", "3.0"),
    ("cbrt(-8)", "-2.0"),
    ("exp(0)", "1.0"),
    ("log(e)", "1.0"),
    ("log(8, 2)", "3.0"),
    ("log10(1000)", "3.0"),
    ("log2(1024)", "10.0"),
    ("sin(0) + tanh(0)", "0.0"),
    ("cos(pi)", "-1.0"),
    ("atan2(1, 1) * 4", repr(math.pi)),
    ("degrees(pi)", "180.0"),
    ("radians(180)", repr(math.pi)),
    ("abs(-3)", "3"),
    ("round(2.567, 2)", "2.57"),
    ("round(2.5)", "2"),
    ("round(1234, -2)", "1200"),
    ("floor(-2.5)", "-3"),
    ("ceil(2.1)", "3"),
    ("factorial(20)", "2432902008176640000"),
    ("factorial(5.0)", "120"),
    ("gcd(12, 18, 27)", "3"),
    ("lcm(4, 6, 10)", "60"),
    ("hypot(3, 4)", "5.0"),
    ("min(3, 1, 2)", "1"),
    ("max(3, 1.5)", "3"),
    ("comb(52, 5)", "2598960"),
    ("comb(3, 5)", "0"),
    ("perm(5, 2)", "20"),
    ("perm(5)", "120"),
    ("  (1 + 2)  ", "3"),
]


@pytest.mark.parametrize(("expression", "expected"), RESULTS)
def test_calculator_results(expression: str, expected: str) -> None:
    assert calculator(expression) == expected


def test_calculator_large_exact_integers() -> None:
    assert calculator("factorial(1000)") == str(math.factorial(1000))
    assert calculator("comb(10000, 5000)") == str(math.comb(10000, 5000))
    assert len(calculator("10 ** 4299")) == calc.MAX_INT_DIGITS


def test_calculator_docstring_names_every_function_and_constant() -> None:
    doc = calculator.__doc__ or ""
    missing = [name for name in [*calc.FUNCTIONS, *calc.CONSTANTS] if f"{name}" not in doc]
    assert missing == []
    assert str(calc.MAX_INT_DIGITS) in doc


REFUSALS = [
    ("x + 1", r"name 'x' is not defined; use numbers and the constants pi, e, tau"),
    ("__import__('os')", r"unknown function '__import__'; available: abs, acos"),
    ("eval('1')", r"unknown function 'eval'; available: .*sqrt"),
    ("().__class__", r"attribute access"),
    ("(1).real", r"attribute access"),
    ("math.sqrt(2)", r"attribute access"),
    ("lambda: 1", r"unsupported syntax: lambda"),
    ("(lambda: 1)()", r"only named functions can be called"),
    ("[x for x in (1, 2)]", r"unsupported syntax: comprehensions"),
    ("(x for x in (1,))", r"unsupported syntax: comprehensions"),
    ("'abc'", r"unsupported syntax: text strings"),
    ("'a' * 3", r"unsupported syntax: text strings"),
    ("True + 1", r"unsupported syntax: the value True"),
    ("1j", r"not a real number"),
    ("(-8) ** 0.5", r"not a real number"),
    ("1 < 2", r"unsupported syntax: comparisons"),
    ("1 if 1 else 2", r"unsupported syntax: if/else"),
    ("(y := 2)", r"unsupported syntax: assignment"),
    ("[1, 2]", r"unsupported syntax: lists"),
    ("1 & 3", r"operator '&' is not supported"),
    ("~1", r"operator '~' is not supported"),
    ("x = 1", r"could not parse the expression"),
    ("import os", r"could not parse the expression"),
    ("   ", r"the expression is empty"),
    ("sqrt", r"sqrt is a function; call it like sqrt\(2\)"),
    ("sqrt(x=4)", r"sqrt\(\) takes no keyword arguments"),
    ("sqrt(1, 2)", r"sqrt\(\) takes 1 argument, got 2"),
    ("log()", r"log\(\) takes 1 or 2 arguments, got 0"),
    ("max()", r"max\(\) takes at least 1 argument, got 0"),
    ("1 / 0", r"^division by zero$"),
    ("1 // 0", r"^division by zero$"),
    ("1 % 0.0", r"^division by zero$"),
    ("0 ** -1", r"division by zero"),
    ("log(0)", r"log\(\) is not defined for these arguments"),
    ("sqrt(-1)", r"sqrt\(\) is not defined for these arguments"),
    ("10 ** 10 ** 10", r"more than 4300 digits"),
    ("9 ** 9 ** 9", r"more than 4300 digits"),
    ("2 ** 2 ** 64", r"more than 4300 digits"),
    ("10 ** 4300", r"more than 4300 digits"),
    ("10 ** 3000 * 10 ** 3000", r"more than 4300 digits"),
    ("factorial(100000)", r"factorial\(\) needs a whole number from 0 to 1000"),
    ("factorial(-1)", r"factorial\(\) needs a whole number from 0 to 1000"),
    ("factorial(2.5)", r"factorial\(\) needs whole numbers, got 2.5"),
    ("comb(100000, 50000)", r"more than 4300 digits"),
    ("comb(10 ** 20, 10 ** 10)", r"more than 4300 digits"),
    ("perm(10 ** 6, 10 ** 5)", r"more than 4300 digits"),
    ("perm(10 ** 6)", r"factorial\(\) needs a whole number from 0 to 1000"),
    ("lcm(10 ** 4000 + 1, 10 ** 4000 + 3)", r"more than 4300 digits"),
    ("round(5, -10 ** 9)", r"round\(\) digits must be from -400 to 400"),
    ("exp(1000)", r"the result of exp\(\) is too large"),
    ("1e308 * 10", r"not a finite number"),
    ("1e999", r"not a finite number"),
    ("10 ** 400 * 1.0", r"too large for a float"),
    ("1 + " * 400 + "1", r"too long \(1601 characters; at most 1000\)"),
    ("+".join(["1"] * 80), r"too complex \(239 syntax nodes; at most 200\)"),
    ("-" * 500 + "1", r"too complex"),
    ("(" * 300 + "1" + ")" * 300, r"could not parse the expression"),
]


def _guarded(real: Callable[..., Any], cheap: Callable[..., bool]) -> Callable[..., Any]:
    """Wrap `real` so that an expensive call fails the test instead of running for ages."""

    def spy(*args: Any) -> Any:
        if not cheap(*args):
            raise AssertionError(f"{real.__name__}{args!r} reached: the guard should refuse first")
        return real(*args)

    spy.__name__ = real.__name__
    return spy


def _digits(base: Any, exponent: Any) -> float:
    """Rough number of digits of an int power (0 for anything that stays small)."""
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
        return 0.0
    return exponent * math.log10(abs(base)) if abs(base) > 1 else 0.0


@pytest.fixture
def expensive_ops_guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every costly operation the evaluator can reach fails loudly when asked for too much."""
    monkeypatch.setattr(
        operator, "pow", _guarded(operator.pow, lambda b, x: _digits(b, x) < 20_000)
    )
    monkeypatch.setattr(math, "factorial", _guarded(math.factorial, lambda n: n <= 5000))
    monkeypatch.setattr(
        math, "comb", _guarded(math.comb, lambda n, k: min(k, n - k) * math.log10(n) < 20_000)
    )
    monkeypatch.setattr(
        math, "perm", _guarded(math.perm, lambda n, k: k * math.log10(max(n, 2)) < 20_000)
    )
    monkeypatch.setattr(
        math, "lcm", _guarded(math.lcm, lambda *a: all(abs(v) < 10**5000 for v in a))
    )


@pytest.mark.usefixtures("expensive_ops_guarded")
@pytest.mark.parametrize(("expression", "message"), REFUSALS)
def test_calculator_refusals(expression: str, message: str) -> None:
    # Refusals come from structural checks made before the work: with the costly operations
    # guarded, a missing check fails here at once instead of hanging.
    with pytest.raises(CalculatorError, match=message):
        calculator(expression)


def test_guard_fixture_catches_an_unguarded_call(expensive_ops_guarded: None) -> None:
    with pytest.raises(AssertionError, match="reached"):
        math.factorial(100_000)


def test_refusals_are_value_errors() -> None:
    with pytest.raises(ValueError, match="division by zero"):
        evaluate("1/0")


def test_evaluate_returns_numbers() -> None:
    assert evaluate("2 ** 10") == 1024 and isinstance(evaluate("2 ** 10"), int)
    assert evaluate("1 / 4") == 0.25


# ---------------------------------------------------------------- current_time

NOVEMBER = datetime(2026, 11, 22, 1, 15, 3, 123456, tzinfo=UTC)
JULY = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("clock", "zone", "expected"),
    [
        (NOVEMBER, "Asia/Shanghai", "2026-11-22T09:15:03+08:00 (Sunday, Asia/Shanghai, UTC+08:00)"),
        (
            NOVEMBER,
            "America/New_York",
            "2026-11-21T20:15:03-05:00 (Saturday, America/New_York, UTC-05:00)",
        ),
        (NOVEMBER, "Asia/Kolkata", "2026-11-22T06:45:03+05:30 (Sunday, Asia/Kolkata, UTC+05:30)"),
        (JULY, "Europe/Berlin", "2026-07-01T14:00:00+02:00 (Wednesday, Europe/Berlin, UTC+02:00)"),
        (JULY, "utc", "2026-07-01T12:00:00+00:00 (Wednesday, UTC, UTC+00:00)"),
    ],
)
def test_current_time_in_zones(clock: datetime, zone: str, expected: str) -> None:
    assert make_current_time(lambda: clock)(zone) == expected


def test_current_time_defaults_to_utc() -> None:
    current_time = make_current_time(lambda: NOVEMBER)
    assert current_time() == "2026-11-22T01:15:03+00:00 (Sunday, UTC, UTC+00:00)"
    assert current_time.__name__ == "current_time"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Berlin", "../../etc/passwd", "/etc/UTC"])
def test_current_time_unknown_zone(zone: str) -> None:
    current_time = make_current_time(lambda: NOVEMBER)
    with pytest.raises(ValueError, match=r"unknown time zone .*Region/City.*Europe/Berlin"):
        current_time(zone)


def test_current_time_default_clock_is_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = make_current_time()("UTC").split(" ")[0]
    assert datetime.fromisoformat(stamp) >= before


# ---------------------------------------------------------------- search_conversations


class FakeSearch:
    """Records each (query, limit) and answers with fixed hits."""

    def __init__(self, hits: list[dict[str, Any]]) -> None:
        self.hits = hits
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, query: str, limit: int) -> list[dict[str, Any]]:
        self.calls.append((query, limit))
        return self.hits


def _hit(number: int) -> dict[str, Any]:
    return {
        "conversation_id": f"c{number}",
        "title": f"Trip {number}",
        "updated_at": "2026-11-20T10:00:00+00:00",
        "snippet": "…flights to Lisbon…",
        "user_id": 7,  # not for the model
    }


async def test_search_returns_hits_of_the_bound_search() -> None:
    search = FakeSearch([_hit(1), _hit(2)])
    result = await search_conversations("  lisbon trip ", context=ToolContext(None, search))
    assert search.calls == [("lisbon trip", 5)]
    assert result == [{k: v for k, v in _hit(n).items() if k != "user_id"} for n in (1, 2)]


@pytest.mark.parametrize(("limit", "sent"), [(0, 1), (-5, 1), (1, 1), (20, 20), (100, 20)])
async def test_search_limit_is_clamped(limit: int, sent: int) -> None:
    search = FakeSearch([_hit(n) for n in range(30)])
    result = await search_conversations("trip", limit, context=ToolContext(None, search))
    assert search.calls == [("trip", sent)]
    assert isinstance(result, list) and len(result) == sent


async def test_search_without_matches() -> None:
    search = FakeSearch([])
    result = await search_conversations("xyzzy", context=ToolContext(None, search))
    assert result == "No conversations match 'xyzzy'."


async def test_search_empty_query_is_refused_before_searching() -> None:
    search = FakeSearch([_hit(1)])
    with pytest.raises(ValueError, match="the query is empty"):
        await search_conversations("   ", context=ToolContext(None, search))
    assert search.calls == []


async def test_search_unavailable() -> None:
    result = await search_conversations("trip", context=ToolContext())
    assert isinstance(result, str) and "not available" in result


# ---------------------------------------------------------------- http_get

Reply = tuple[int, list[tuple[str, str]], bytes]


class LocalHttp:
    """A tiny HTTP/1.1 server on 127.0.0.1: fixed replies per path, records request paths."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.hanging: set[str] = set()  # paths that get no answer until `release` is set
        self.requests: list[str] = []
        self.release = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
            self.requests.append(target)
            if target in self.hanging:
                await self.release.wait()
                return
            status, headers, body = self.routes.get(
                target, (404, [("Content-Type", "text/plain")], b"not found")
            )
            lines = [f"HTTP/1.1 {status} Reply", f"Content-Length: {len(body)}"]
            lines += ["Connection: close", *(f"{name}: {value}" for name, value in headers)]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[LocalHttp]:
    local = LocalHttp()
    await local.start()
    yield local
    await local.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:  # no proxies from the environment
        yield http


def _text(body: str, content_type: str = "text/plain; charset=utf-8") -> Reply:
    return 200, [("Content-Type", content_type)], body.encode("utf-8")


def _redirect(location: str, status: int = 302) -> Reply:
    return status, [("Location", location)], b""


def _http_get(
    client: httpx.AsyncClient, port: int, **options: Any
) -> Callable[[str], Awaitable[str]]:
    return make_http_get(client, allowed_hosts=(f"127.0.0.1:{port}",), **options)


async def test_http_get_allowed_host(server: LocalHttp, client: httpx.AsyncClient) -> None:
    server.routes["/text"] = _text("héllo wörld")
    result = await _http_get(client, server.port)(f"{server.base}/text")
    assert result == "HTTP 200 text/plain; 11 characters\n\nhéllo wörld"
    assert server.requests == ["/text"]


async def test_http_get_json_and_error_status(server: LocalHttp, client: httpx.AsyncClient) -> None:
    server.routes["/api"] = _text('{"a": 1}', "application/json")
    http_get = _http_get(client, server.port)
    assert (
        await http_get(f"{server.base}/api")
        == 'HTTP 200 application/json; 8 characters\n\n{"a": 1}'
    )
    assert (
        await http_get(f"{server.base}/missing") == "HTTP 404 text/plain; 9 characters\n\nnot found"
    )


async def test_http_get_decodes_with_the_response_charset(
    server: LocalHttp, client: httpx.AsyncClient
) -> None:
    server.routes["/latin"] = (
        200,
        [("Content-Type", "text/plain; charset=iso-8859-1")],
        "café".encode("latin-1"),
    )
    assert (await _http_get(client, server.port)(f"{server.base}/latin")).endswith("\n\ncafé")


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/text",
        "http://127.0.0.2:{port}/text",
        "http://127.0.0.1.evil.test:{port}/text",
    ],
)
async def test_http_get_other_host_refused_without_a_request(
    server: LocalHttp, client: httpx.AsyncClient, url: str
) -> None:
    server.routes["/text"] = _text("secret")
    with pytest.raises(ValueError, match=r"host '.*' is not allowed; allowed hosts: 127\.0\.0\.1:"):
        await _http_get(client, server.port)(url.format(port=server.port))
    assert server.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://user:secret@127.0.0.1:{port}/text", "user names or passwords"),
        ("http://user@127.0.0.1:{port}/text", "user names or passwords"),
        ("ftp://127.0.0.1:{port}/text", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("not a url", "only http and https|not a valid URL"),
    ],
)
async def test_http_get_refuses_bad_urls_without_a_request(
    server: LocalHttp, client: httpx.AsyncClient, url: str, message: str
) -> None:
    server.routes["/text"] = _text("secret")
    with pytest.raises(ValueError, match=message):
        await _http_get(client, server.port)(url.format(port=server.port))
    assert server.requests == []


async def test_http_get_follows_allowed_redirects(
    server: LocalHttp, client: httpx.AsyncClient
) -> None:
    server.routes["/hop"] = _redirect("/middle", 301)
    server.routes["/middle"] = _redirect(f"{server.base}/text", 307)
    server.routes["/text"] = _text("arrived")
    result = await _http_get(client, server.port)(f"{server.base}/hop")
    assert result == f"HTTP 200 text/plain; 7 characters; from {server.base}/text\n\narrived"
    assert server.requests == ["/hop", "/middle", "/text"]


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://localhost:{port}/secret", r"redirect target host 'localhost' is not allowed"),
        ("http://example.com/", r"redirect target host 'example.com' is not allowed"),
        ("file:///etc/passwd", r"redirect target .* only http and https"),
        ("http://user:pw@127.0.0.1:{port}/secret", r"user names or passwords"),
    ],
)
async def test_http_get_redirect_to_disallowed_target_refused(
    server: LocalHttp, client: httpx.AsyncClient, location: str, message: str
) -> None:
    server.routes["/away"] = _redirect(location.format(port=server.port))
    server.routes["/secret"] = _text("secret")
    with pytest.raises(ValueError, match=message):
        await _http_get(client, server.port)(f"{server.base}/away")
    assert server.requests == ["/away"]


async def test_http_get_too_many_redirects(server: LocalHttp, client: httpx.AsyncClient) -> None:
    server.routes["/loop"] = _redirect("/loop")
    with pytest.raises(HttpGetError, match=r"too many redirects \(more than 5\)"):
        await _http_get(client, server.port)(f"{server.base}/loop")
    assert server.requests == ["/loop"] * 6


async def test_http_get_truncates_at_max_bytes(
    server: LocalHttp, client: httpx.AsyncClient
) -> None:
    server.routes["/big"] = _text("a" * 500_000)
    server.routes["/exact"] = _text("b" * 1000)
    http_get = _http_get(client, server.port, max_bytes=1000)
    head, _, body = (await http_get(f"{server.base}/big")).partition("\n\n")
    assert head == (
        "HTTP 200 text/plain; 1,000 characters (truncated: only the first 1,000 bytes were read)"
    )
    assert body == "a" * 1000
    assert (
        await http_get(f"{server.base}/exact")
        == f"HTTP 200 text/plain; 1,000 characters\n\n{'b' * 1000}"
    )


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream", None])
async def test_http_get_refuses_binary_content(
    server: LocalHttp, client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    server.routes["/blob"] = (200, headers, b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(HttpGetError, match=f"content type {content_type or 'unknown'}; only text"):
        await _http_get(client, server.port)(f"{server.base}/blob")


async def test_http_get_times_out(server: LocalHttp, client: httpx.AsyncClient) -> None:
    server.hanging.add("/hang")
    http_get = _http_get(client, server.port, timeout_s=0.2)
    # The outer deadline only turns a missing timeout into a failure instead of a hang.
    async with asyncio.timeout(10):
        with pytest.raises(HttpGetError, match=r"timed out after 0\.2 s"):
            await http_get(f"{server.base}/hang")
    assert server.requests == ["/hang"]


async def test_http_get_connection_refused(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HttpGetError, match="could not fetch .*ConnectError"):
        await _http_get(client, port)(f"http://127.0.0.1:{port}/")


async def test_http_get_reaches_a_listed_host_only_on_80_or_443_unless_its_port_is_listed(
    server: LocalHttp, client: httpx.AsyncClient
) -> None:
    """The loopback server listens on a port that is neither 80 nor 443."""
    server.routes["/admin"] = _text("internal admin page")
    assert server.port not in (80, 443)
    host_only = make_http_get(client, allowed_hosts=("127.0.0.1",))
    with pytest.raises(
        ValueError,
        match=(
            rf"URL port {server.port} of '127\.0\.0\.1' is not allowed: a host listed without "
            rf"a port allows only 80 \(http\) and 443 \(https\).*can list "
            rf"127\.0\.0\.1:{server.port} in HTTP_GET_ALLOWED_HOSTS"
        ),
    ):
        await host_only(f"{server.base}/admin")
    assert server.requests == [], "http_get reached a port that was not listed"

    with_port = make_http_get(client, allowed_hosts=(f"127.0.0.1:{server.port}",))
    assert (await with_port(f"{server.base}/admin")).endswith("\n\ninternal admin page")
    # host:port allows that port only: a redirect to another port of the host is refused.
    server.routes["/hop"] = _redirect(f"http://127.0.0.1:{server.port + 1}/admin")
    with pytest.raises(ValueError, match=rf"redirect target port {server.port + 1} of"):
        await with_port(f"{server.base}/hop")
    assert server.requests == ["/admin", "/hop"]


@pytest.mark.parametrize(
    ("entries", "url", "allowed"),
    [
        (("example.com",), "http://example.com/", True),
        (("example.com",), "https://example.com:443/", True),
        (("example.com",), "http://example.com:443/", False),  # by scheme: http is 80
        (("example.com",), "https://example.com:8443/", False),
        (("example.com:8443",), "https://example.com:8443/", True),
        (("example.com:8443",), "https://example.com/", False),
        (("*.example.org:8080",), "http://docs.example.org:8080/", True),
        (("[::1]:9000",), "http://[::1]:9000/", True),
        (("[::1]",), "http://[::1]:9000/", False),
        (("::1",), "http://[::1]/", True),
    ],
)
def test_allow_list_entries_with_and_without_ports(
    entries: tuple[str, ...], url: str, allowed: bool
) -> None:
    listed = normalize_hosts(entries)
    if allowed:
        check_url(url, listed)
    else:
        with pytest.raises(ValueError, match="is not allowed"):
            check_url(url, listed)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("example.com:0", "has port '0'; use a port from 1 to 65535"),
        ("example.com:65536", "has port '65536'"),
        ("example.com:http", "has port 'http'"),
        ("[::1]x", "is not a host name or host:port"),
        (":8080", "has no host name"),
    ],
)
def test_allow_list_entries_with_bad_ports_are_refused(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        normalize_hosts([entry])


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("example.com", True),
        ("EXAMPLE.com", True),
        ("example.com.", True),
        ("docs.example.org", True),
        ("a.b.example.org", True),
        ("example.org", False),
        ("badexample.org", False),
        ("example.com.evil.test", False),
        ("evil.test", False),
    ],
)
def test_host_allow_list_matching(host: str, allowed: bool) -> None:
    entries = normalize_hosts(["Example.COM.", " *.example.org ", ""])
    assert entries == ("example.com", "*.example.org")
    assert host_allowed(host, entries) is allowed


@pytest.mark.parametrize("entry", ["https://example.com", "example.com/path", "user@example.com"])
def test_allow_list_entries_must_be_hosts(entry: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        normalize_hosts([entry])


async def test_http_get_needs_an_allow_list(client: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="at least one allowed host"):
        make_http_get(client, allowed_hosts=[" "])


# ---------------------------------------------------------------- registration


def _parameters(registry: ToolRegistry, name: str) -> dict[str, Any]:
    tool = registry.get(name)
    assert tool is not None
    return tool.schema()["function"]["parameters"]


def test_register_builtins_without_http() -> None:
    registry = ToolRegistry()
    register_builtins(registry, now=lambda: NOVEMBER)
    assert registry.names() == ["calculator", "current_time", "search_conversations"]
    expected = {
        "calculator": ({"expression"}, ["expression"]),
        "current_time": ({"timezone"}, []),
        "search_conversations": ({"query", "limit"}, ["query"]),
    }
    for name, (properties, required) in expected.items():
        parameters = _parameters(registry, name)
        assert set(parameters["properties"]) == properties, name
        assert parameters["required"] == required, name
        assert all(p.get("description") for p in parameters["properties"].values()), name
    search = registry.get("search_conversations")
    assert search is not None and search.context_param == "context"
    clock = registry.get("current_time")
    assert clock is not None
    assert clock.function("Asia/Shanghai").startswith("2026-11-22T09:15:03+08:00")


async def test_register_builtins_with_http(client: httpx.AsyncClient) -> None:
    registry = ToolRegistry()
    register_builtins(registry, http=client, http_allowed_hosts=("127.0.0.1",), http_max_bytes=5000)
    assert registry.names() == ["calculator", "current_time", "search_conversations", "http_get"]
    assert _parameters(registry, "http_get")["properties"].keys() == {"url"}
    http_get = registry.get("http_get")
    assert http_get is not None
    assert "127.0.0.1" in http_get.description and "5,000 bytes" in http_get.description
    assert http_get.timeout_s is not None and http_get.timeout_s > 10.0


def test_register_builtins_http_needs_a_client() -> None:
    with pytest.raises(ValueError, match="httpx.AsyncClient"):
        register_builtins(ToolRegistry(), http_allowed_hosts=("127.0.0.1",))
