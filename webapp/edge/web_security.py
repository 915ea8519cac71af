"""HTTP hardening around the mounted Gradio apps: the Host check, a Content-Security-Policy on
every page, same-origin checks on state-changing requests, and sign-out by POST only.

Gradio 6.31's page runs five inline scripts (its config and start-up); the policy allows
exactly those by their SHA-256, computed from each page as it is sent, so no other inline
script, event-handler attribute or eval runs. Its components set inline styles, so styles
are the one thing allowed inline.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

import brotli
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",  # plus the page's own inline scripts' hashes
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "media-src": "'self' blob:",
    "font-src": "'self' data:",  # KaTeX's fonts are inlined in Gradio's bundle
    "connect-src": "'self'",
    "worker-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
# same-origin, not no-referrer: under no-referrer browsers send `Origin: null` with a form POST
# (sign-out), which the same-origin check must refuse. Other sites still get no Referer.
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
LOGOUT_PATHS = ("/logout", "/share/logout")
# Gradio's GET that writes a session's component values to disk; Parley has no deep links.
REFUSED_PATHS = ("/gradio_api/deep_link", "/share/gradio_api/deep_link")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
HOST_CHECK_EXEMPT = ("/healthz",)  # load balancers ask with their own idea of the Host
_INLINE_SCRIPT = re.compile(rb"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_SRC_ATTRIBUTE = re.compile(rb"\ssrc\s*=", re.IGNORECASE)
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(\d+))?")


def policy(script_hashes: Sequence[str] = ()) -> str:
    """The Content-Security-Policy of a page whose inline scripts hash to script_hashes."""
    directives = dict(POLICY)
    if script_hashes:
        directives["script-src"] += "".join(f" 'sha256-{h}'" for h in script_hashes)
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def inline_script_hashes(page: bytes) -> list[str]:
    """Base64 SHA-256 of each inline <script>'s text, as the browser hashes it."""
    hashes = []
    for match in _INLINE_SCRIPT.finditer(page):
        if _SRC_ATTRIBUTE.search(match.group(1)):
            continue
        text = match.group(2).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        hashes.append(base64.b64encode(hashlib.sha256(text).digest()).decode("ascii"))
    return list(dict.fromkeys(hashes))


def _decoded(body: bytes, encoding: str) -> bytes:
    if encoding == "br":
        return bytes(brotli.decompress(body))
    if encoding == "gzip":
        return gzip.decompress(body)
    return body


class SecurityHeaders:
    """nosniff, no referrer and no framing on every response; the CSP on every HTML page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_secured(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = Headers(raw=message.get("headers", []))
                if not headers.get("content-type", "").startswith("text/html"):
                    await send({**message, "headers": _with(message, HEADERS)})
                    return
                start = message  # held until the whole page is here: its hashes go first
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            encoding = Headers(raw=start.get("headers", [])).get("content-encoding", "")
            csp = policy(inline_script_hashes(_decoded(body, encoding.strip().lower())))
            extra = [*HEADERS, (b"content-security-policy", csp.encode())]
            await send({**start, "headers": _with(start, extra)})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_secured)


def _with(start: Message, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    names = {name for name, _ in extra}
    kept = [(n, v) for n, v in start.get("headers", []) if n.lower() not in names]
    return [*kept, *extra]


def same_origin(headers: Headers, *, strict: bool) -> bool:
    """Whether a request comes from a page of this site (Origin, else Sec-Fetch-Site).

    Not strict, a request carrying neither header passes: API clients send neither, and
    browsers send Origin with every POST.
    """
    origin = headers.get("origin")
    if origin is not None:
        return _origin_netloc(origin) == _host_netloc(headers.get("host", ""), origin)
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    return not strict


def _origin_netloc(origin: str) -> str | None:
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # "null" and the like: an opaque origin is never ours
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.hostname}:{port or default}".lower()


def _host_netloc(host: str, origin: str) -> str:
    match = _HOST.fullmatch(host.strip())
    if match is None:
        return ""  # matches no origin
    default = "443" if origin.lower().startswith("https:") else "80"
    return f"{match.group(1).strip('[]')}:{match.group(2) or default}".lower()


class SameOriginGuard:
    """Refuses state-changing requests from other sites, and makes sign-out a POST.

    /logout (Gradio's, a GET that signs every session of the user out) answers GET with 405;
    a POST from this site's own page is handed to it as the GET it expects. Any other POST,
    PUT, PATCH or DELETE that a browser marks as coming from another site gets 403.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", "")).rstrip("/") or "/"
        method = str(scope.get("method", "GET")).upper()
        headers = Headers(scope=scope)
        if path in REFUSED_PATHS:
            await _answer(send, 404, "Not found.")
        elif path in LOGOUT_PATHS:
            if method != "POST":
                await _answer(
                    send, 405, "Sign out with the Sign out button (POST).", [(b"allow", b"POST")]
                )
            elif not same_origin(headers, strict=True):
                await _answer(send, 403, "Sign-out must come from Parley's own page.")
            else:
                await self.app({**scope, "method": "GET"}, receive, send)
        elif method in UNSAFE_METHODS and not same_origin(headers, strict=False):
            await _answer(send, 403, "Cross-site requests are refused.")
        else:
            await self.app(scope, receive, send)


async def _answer(
    send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


class HostCheck:
    """Starlette's TrustedHostMiddleware (400 for a Host not in ALLOWED_HOSTS), except for
    the health check, which reveals nothing and is asked by load balancers by address."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.checked = TrustedHostMiddleware(
            app, allowed_hosts=list(allowed_hosts), www_redirect=False
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")) in HOST_CHECK_EXEMPT:
            await self.app(scope, receive, send)
            return
        await self.checked(scope, receive, send)
