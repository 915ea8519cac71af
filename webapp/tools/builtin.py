"""Parley's built-in tools: calculator, current_time, search_conversations and http_get."""

import asyncio
import codecs
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from webapp.tools.calculator import evaluate, format_number
from webapp.tools.context import ToolContext
from webapp.tools.registry import ToolRegistry

SEARCH_LIMIT_MAX = 20
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-yaml",
        "application/yaml",
        "application/toml",
        "application/x-www-form-urlencoded",
        "application/csv",
        "application/x-ndjson",
    }
)
_HIT_KEYS = ("conversation_id", "title", "updated_at", "snippet")


class CurrentTime(Protocol):
    """The current_time tool: a time zone name (UTC by default) -> a readable timestamp."""

    __name__: str

    def __call__(self, timezone: str = "UTC") -> str: ...


class HttpGetError(RuntimeError):
    """A fetch that failed: network error, timeout, too many redirects or non-text content."""


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly; use it for any calculation instead of mental math.

    Supports numbers (42, 2.5, 1e-3, 1_000, 0x1f), + - * / // % and ** (also written ^, so 2^10
    is 1024), parentheses, the constants pi, e, tau, and the functions abs, sqrt, cbrt, exp,
    log (log(x) is natural, log(x, base) any base), log10, log2, sin, cos, tan, asin, acos, atan,
    atan2, sinh, cosh, tanh, degrees, radians, round (round(x) or round(x, digits)), floor, ceil,
    factorial, gcd, lcm, hypot, min, max, comb and perm. Angles are in radians. Integers are
    exact (up to 4300 digits); / always gives a decimal (4/2 is 2.0). No variables, text or
    assignments: one expression per call.

    Args:
        expression: The expression to evaluate, e.g. "(3 + 4)^2 * sqrt(2)" or "comb(52, 5)".
    """
    return format_number(evaluate(expression))


def _utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def _zone(name: str) -> ZoneInfo:
    """The IANA zone called `name` (UTC, GMT and Z are accepted in any case)."""
    key = name.strip()
    if key.upper() in ("UTC", "GMT", "Z", ""):
        key = "UTC"
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name of the form Region/City, "
            'e.g. "Europe/Berlin", "America/New_York" or "Asia/Tokyo", or "UTC"'
        ) from None


def _format_offset(moment: datetime) -> str:
    """'UTC+08:00' style offset of an aware datetime."""
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def make_current_time(now: Callable[[], datetime] = _utc_now) -> CurrentTime:
    """Build the current_time tool around a clock that returns an aware datetime."""

    def current_time(timezone: str = "UTC") -> str:
        """Get the current date and time; use it whenever the answer depends on today or now.

        Returns the ISO-8601 time with the weekday, zone and UTC offset, e.g.
        "2026-11-22T09:15:03+08:00 (Sunday, Asia/Shanghai, UTC+08:00)".

        Args:
            timezone: An IANA time zone name of the form Region/City, e.g. "Europe/Berlin",
                "America/New_York" or "Asia/Tokyo"; "UTC" if not given.
        """
        zone = _zone(timezone)
        moment = now()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        local = moment.astimezone(zone).replace(microsecond=0)
        return f"{local.isoformat()} ({local:%A}, {zone.key}, {_format_offset(local)})"

    return current_time


async def search_conversations(
    query: str, limit: int = 5, *, context: ToolContext
) -> list[dict[str, Any]] | str:
    """Search the user's own saved conversations; use it when they refer to an earlier chat.

    Returns the best matches, newest first, each with conversation_id, title, updated_at
    (ISO-8601) and a snippet of the matching text, or a sentence saying nothing matched.

    Args:
        query: Words to look for, e.g. "postgres migration" or "birthday gift ideas".
        limit: How many conversations to return at most, from 1 to 20.
    """
    text = query.strip()
    if not text:
        raise ValueError('the query is empty; pass words to look for, e.g. "trip to Lisbon"')
    if context.search_conversations is None:
        return "Searching conversations is not available here; answer without it."
    count = max(1, min(SEARCH_LIMIT_MAX, limit))
    hits = await context.search_conversations(text, count)
    if not hits:
        return f"No conversations match {text!r}."
    return [{key: hit.get(key) for key in _HIT_KEYS} for hit in hits[:count]]


DEFAULT_PORTS = {"http": 80, "https": 443}


def _split_entry(entry: str) -> tuple[str, int | None]:
    """An allow-list entry → (host, port); the port is None for "default ports only"."""
    host, port = entry, ""
    if entry.startswith("["):  # [::1] or [::1]:8080
        host, _, rest = entry[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"allowed host {entry!r} is not a host name or host:port")
        port = rest[1:]
    elif entry.count(":") == 1:  # host:port (a bare IPv6 address has more colons)
        host, port = entry.split(":")
    if not port:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"allowed host {entry!r} has port {port!r}; use a port from 1 to 65535")
    return host, int(port)


def normalize_hosts(hosts: Iterable[str]) -> tuple[str, ...]:
    """Allow-list entries lower-cased, without trailing dots; refuse URLs and bad ports.

    "host" allows ports 80 (http) and 443 (https) only; "host:port" allows that port.
    """
    entries = []
    for entry in hosts:
        text = entry.strip().lower()
        if not text:
            continue
        if "/" in text or "@" in text:
            raise ValueError(
                f"allowed host {entry!r} is not a host name; "
                "write e.g. example.com, *.example.com or wiki.internal:8080"
            )
        host, port = _split_entry(text)
        host = host.rstrip(".")
        if not host:
            raise ValueError(f"allowed host {entry!r} has no host name")
        bracketed = f"[{host}]" if ":" in host else host
        entries.append(bracketed if port is None else f"{bracketed}:{port}")
    return tuple(entries)


def _host_matches(name: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return name == pattern


def host_allowed(
    host: str, allowed: tuple[str, ...], port: int | None = None, scheme: str = "https"
) -> bool:
    """Whether `host` on `port` (None: the scheme's default) is allowed.

    Exact, case-insensitive host match; "*.example.com" matches any subdomain of example.com.
    An entry without a port allows only the scheme's default port (80 or 443).
    """
    name = host.lower().rstrip(".").strip("[]")
    wanted = port if port is not None else DEFAULT_PORTS.get(scheme)
    for entry in allowed:
        pattern, entry_port = _split_entry(entry)
        if not _host_matches(name, pattern.rstrip(".")):
            continue
        if entry_port is None and wanted == DEFAULT_PORTS.get(scheme):
            return True
        if entry_port is not None and wanted == entry_port:
            return True
    return False


def check_url(url: str | httpx.URL, allowed: tuple[str, ...], *, what: str = "URL") -> httpx.URL:
    """Parse `url` and refuse anything but http(s) to an allowed host and port, without
    credentials."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ValueError(f"{what} {str(url)!r} is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"{what} {str(url)!r} is refused: only http and https URLs can be fetched")
    if parsed.userinfo:
        raise ValueError(f"{what} is refused: URLs with user names or passwords are not allowed")
    if not parsed.host or not host_allowed(parsed.host, allowed, parsed.port, parsed.scheme):
        return _refuse_host(parsed, allowed, what)
    return parsed


def _refuse_host(parsed: httpx.URL, allowed: tuple[str, ...], what: str) -> httpx.URL:
    name = parsed.host.lower().rstrip(".")
    listed = any(_host_matches(name, _split_entry(entry)[0]) for entry in allowed)
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    entry = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
    if listed:
        raise ValueError(
            f"{what} port {port} of {parsed.host!r} is not allowed: a host listed without a "
            f"port allows only 80 (http) and 443 (https), host:port only that port; an admin "
            f"can list {entry} in HTTP_GET_ALLOWED_HOSTS (allowed hosts: "
            f"{', '.join(allowed)})"
        )
    raise ValueError(
        f"{what} host {parsed.host!r} is not allowed; allowed hosts: {', '.join(allowed)}"
    )


def _is_text(media_type: str) -> bool:
    """True for text/*, JSON, XML and similar readable types."""
    return (
        media_type.startswith("text/")
        or media_type in _TEXT_TYPES
        or media_type.endswith(("+json", "+xml"))
    )


async def _read_text(response: httpx.Response, max_bytes: int) -> tuple[str, bool]:
    """Read at most `max_bytes` of the body, decoded with its charset; (text, truncated)."""
    body = bytearray()
    truncated = False
    async for chunk in response.aiter_bytes():
        room = max_bytes - len(body)
        if len(chunk) > room:
            body += chunk[:room]
            truncated = True
            break
        body += chunk
    encoding = response.charset_encoding or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    return body.decode(encoding, errors="replace"), truncated


async def _fetch(
    client: httpx.AsyncClient, url: str, allowed: tuple[str, ...], max_bytes: int, timeout_s: float
) -> str:
    """GET `url`, following up to MAX_REDIRECTS redirects, each checked against `allowed`."""
    current = check_url(url, allowed)
    headers = {"Accept-Encoding": "identity", "Accept": "text/*, application/json, */*;q=0.1"}
    for redirects in range(MAX_REDIRECTS + 1):
        async with client.stream(
            "GET", current, headers=headers, follow_redirects=False, timeout=timeout_s
        ) as response:
            location = response.headers.get("location")
            if response.status_code in _REDIRECT_STATUSES and location:
                current = check_url(current.join(location), allowed, what="redirect target")
                continue
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not _is_text(media_type):
                raise HttpGetError(
                    f"{current} has content type {media_type or 'unknown'}; only text, JSON "
                    "and XML can be read"
                )
            text, truncated = await _read_text(response, max_bytes)
        head = f"HTTP {response.status_code} {media_type}; {len(text):,} characters"
        if truncated:
            head += f" (truncated: only the first {max_bytes:,} bytes were read)"
        if redirects:
            head += f"; from {current}"
        return f"{head}\n\n{text}"
    raise HttpGetError(f"too many redirects (more than {MAX_REDIRECTS}) starting at {url}")


def make_http_get(
    client: httpx.AsyncClient,
    *,
    allowed_hosts: Iterable[str],
    max_bytes: int = 200_000,
    timeout_s: float = 10.0,
) -> Callable[[str], Awaitable[str]]:
    """Build the http_get tool: fetches text from allow-listed hosts through `client`."""
    allowed = normalize_hosts(allowed_hosts)
    if not allowed:
        raise ValueError("http_get needs at least one allowed host")

    async def http_get(url: str) -> str:
        try:
            async with asyncio.timeout(timeout_s):
                return await _fetch(client, url, allowed, max_bytes, timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            raise HttpGetError(f"timed out after {timeout_s:g} s fetching {url}") from None
        except httpx.HTTPError as exc:
            raise HttpGetError(f"could not fetch {url}: {type(exc).__name__}: {exc}") from None

    example = allowed[0].removeprefix("*.")
    http_get.__doc__ = (
        "Fetch a URL and return its text; use it to read a web page or API you are given.\n\n"
        f"Only http(s) URLs on these hosts can be fetched: {', '.join(allowed)}. Returns the "
        "status, content type and size, then the text (HTML is returned as is), cut after "
        f"{max_bytes:,} bytes. Images and other binary content are refused.\n\n"
        "Args:\n"
        f'    url: The full URL, e.g. "https://{example}/page".\n'
    )
    return http_get


def register_builtins(
    registry: ToolRegistry,
    *,
    http: httpx.AsyncClient | None = None,
    http_allowed_hosts: tuple[str, ...] = (),
    http_max_bytes: int = 200_000,
    http_timeout_s: float = 10.0,
    now: Callable[[], datetime] | None = None,
) -> None:
    """Register calculator, current_time, search_conversations; http_get if hosts are allowed."""
    registry.register(calculator)
    registry.register(make_current_time(now or _utc_now))
    registry.register(search_conversations)
    if normalize_hosts(http_allowed_hosts):
        if http is None:
            raise ValueError("http_get needs an httpx.AsyncClient when allowed hosts are set")
        http_get = make_http_get(
            http,
            allowed_hosts=http_allowed_hosts,
            max_bytes=http_max_bytes,
            timeout_s=http_timeout_s,
        )
        # The tool's own deadline fires first, with a clearer message than the registry's.
        registry.register(http_get, timeout_s=http_timeout_s + 2.0)
