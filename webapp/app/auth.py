"""Who is asking: built-in accounts (argon2 hashes, throttled sign-in) or a trusted proxy header.

Three modes (AUTH_MODE): `none` (one local user), `accounts` (Gradio's login form and
gradio_client's `auth=` check passwords here), `header` (an SSO reverse proxy sets a header,
accepted only from TRUSTED_PROXIES). Every handler resolves the user through `Identity`.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session

from storage import accounts
from storage import repository as repo
from storage.db import unit_of_work
from storage.field_limits import shown
from storage.models import User, username_key
from webapp.config import Settings

log = logging.getLogger(__name__)
LOCAL_USER = "local"  # the single user when there is no login
MIN_PASSWORD = 8
CACHE_S = 5.0  # how long a user's disabled/admin flags are trusted before re-reading them
# The address a sign-in comes from: LoginAddressGuard sets it for the request, because
# Gradio calls `auth(username, password)` without the request.
login_source: ContextVar[str] = ContextVar("login_source", default="")


class NotSignedIn(Exception):
    """The request carries no usable identity; the message says what to do."""


def hasher() -> PasswordHasher:
    """argon2id with the library's defaults (RFC 9106 low-memory profile)."""
    return PasswordHasher()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise accounts.AccountError(f"Passwords need at least {MIN_PASSWORD} characters.")
    return hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass
class LoginThrottle:
    """Refuses sign-in for a while after repeated failures for one key (a name at an address,
    or an address)."""

    max_failures: int = 5
    lockout_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again (0 when it may try now)."""
        recent = self._recent(key)
        if len(recent) < self.max_failures:
            return 0.0
        return max(0.0, recent[-self.max_failures] + self.lockout_s - self.clock())

    def failed(self, key: str) -> None:
        self._failures[key] = self._recent(key) + [self.clock()]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def forgive_one(self, key: str) -> None:
        """Take back the newest counted attempt (it was counted up front and succeeded)."""
        recent = self._recent(key)
        if recent:
            recent.pop()
            if recent:
                self._failures[key] = recent
            else:
                self._failures.pop(key, None)

    def _recent(self, key: str) -> list[float]:
        horizon = self.clock() - self.lockout_s
        recent = [t for t in self._failures.get(key, []) if t > horizon]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return recent


class Accounts:
    """Password sign-in against the users table; the callable Gradio's login calls."""

    MAX_CHECKS = 8  # sign-in checks in flight (each ~0.2 s of CPU and 64 MiB); more: refused

    def __init__(self, session_factory: Callable[[], Session], throttle: LoginThrottle) -> None:
        self._session_factory = session_factory
        self.throttle = throttle
        # Hashing gets its own small pool: a flood of sign-ins must not starve the database
        # work that every chat turn runs in the default pool.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="parley-argon2")
        self._in_flight = 0

    async def authenticate(self, username: str, password: str) -> bool:
        """Gradio's `auth=`: True signs in. Hashing runs in a thread, off the event loop.

        Pass this bound method, not the object: Gradio awaits `auth` only when
        inspect.iscoroutinefunction(auth) is true, which it is not for an object with an
        async __call__ (the un-awaited coroutine would count as a successful sign-in).
        """
        # Per name *and* address: a stranger's failures lock the name only where they come
        # from, never its owner out from their own address (LoginAddressGuard limits each
        # address over all names).
        key = f"user:{username.strip().lower()}@{login_source.get() or '?'}"
        wait = self.throttle.retry_after(key)
        if wait > 0:
            log.warning(
                "sign-in refused for %s: too many failures (retry in %.0f s)", shown(username), wait
            )
            return False
        if self._in_flight >= self.MAX_CHECKS:
            log.warning("sign-in refused for %s: too many sign-ins in progress", shown(username))
            return False
        # Counted before the check (no await in between), so parallel guesses cannot all
        # slip past the limit; a success clears the count.
        self.throttle.failed(key)
        self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._pool, self.check, username.strip(), password)
        finally:
            self._in_flight -= 1
        if ok:
            self.throttle.succeeded(key)
        else:
            log.info("failed sign-in for %s", shown(username))
        return ok

    def check(self, username: str, password: str) -> bool:
        with unit_of_work(self._session_factory) as session:
            user = accounts.get_user(session=session, username=username)
        if user is None or user.disabled:
            verify_password(_dummy_hash(), password)  # same cost whether or not the name exists
            return False
        return verify_password(user.password_hash, password)


@functools.cache
def _dummy_hash() -> str:
    return hasher().hash("parley-timing-equaliser")


def trusted(address: str | None, networks: tuple[str, ...]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


class HeaderAuth:
    """Gradio's `auth_dependency` for header mode: the proxy's user header, from the proxy only."""

    def __init__(self, header: str, proxies: tuple[str, ...]) -> None:
        self.header = header
        self.proxies = proxies

    def __call__(self, request: Any) -> str | None:
        client = getattr(request, "client", None)
        if not trusted(getattr(client, "host", None), self.proxies):
            return None
        name = (request.headers.get(self.header) or "").strip()
        if not name or len(name) > accounts.USERNAME_MAX:
            return None
        return name


@dataclass(frozen=True, slots=True)
class Person:
    """The signed-in user as handlers need it."""

    user_id: int
    username: str
    is_admin: bool


class Identity:
    """Resolves a request to a Person, re-reading the account's flags every few seconds."""

    def __init__(
        self,
        settings: Settings,
        session_factory: Callable[[], Session],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = settings.auth_mode
        self._session_factory = session_factory
        self._clock = clock
        self._header = HeaderAuth(settings.auth_header, settings.trusted_proxies)
        self._cache: dict[str, tuple[float, User]] = {}
        self._loading: dict[str, asyncio.Future[User]] = {}
        self._generation = 0  # bumped by `forget`: a read started before it is not cached

    def username(self, request: Any) -> str:
        """The name behind a gr.Request (or FastAPI request); raise NotSignedIn."""
        if self.mode == "none":
            return LOCAL_USER
        name = getattr(request, "username", None) if request is not None else None
        if not name and self.mode == "header" and request is not None:
            name = self._header(request)
        if not name:
            raise NotSignedIn("You are not signed in: reload the page and sign in again.")
        return str(name)

    async def person(self, request: Any) -> Person:
        """The signed-in, enabled user; raise NotSignedIn otherwise."""
        name = self.username(request)
        user = await self.user(name)
        if user.disabled:
            raise NotSignedIn("This account is disabled: ask an admin to enable it.")
        assert user.id is not None
        # Without login, the one local user administers the instance.
        return Person(user.id, user.username, user.is_admin or self.mode == "none")

    async def user(self, name: str) -> User:
        """The user of this name, whatever its case; created on first sight in header mode."""
        cached = self._cache.get(name)
        if cached is not None and self._clock() - cached[0] < CACHE_S:
            return cached[1]

        # Requests that arrive together for one user share one read (a burst of API calls).
        loading = self._loading.get(name)
        if loading is None:
            loading = self._loading[name] = asyncio.ensure_future(self._load(name))
            loading.add_done_callback(
                lambda done: self._loading.pop(name) if self._loading.get(name) is done else None
            )
        return await asyncio.shield(loading)

    async def _load(self, name: str) -> User:
        generation = self._generation

        def load() -> User:
            with unit_of_work(self._session_factory) as session:
                # Header mode creates users on first sight; accounts exist already.
                return repo.ensure_user(session=session, username=name)

        user = await asyncio.to_thread(load)
        if len(self._cache) > 10_000:
            self._cache.clear()
        if generation == self._generation:  # not read before a `forget` of this process
            self._cache[name] = (self._clock(), user)
        return user

    def forget(self, name: str) -> None:
        """Drop a cached user, in every spelling (after an admin changes it in this process)."""
        key = username_key(name)
        self._generation += 1
        for spelling in [cached for cached in self._cache if username_key(cached) == key]:
            del self._cache[spelling]
        for spelling in [loading for loading in self._loading if username_key(loading) == key]:
            del self._loading[spelling]


class LoginAddressGuard:
    """ASGI middleware: throttle sign-in attempts per client address (name spraying).

    Counts failed POSTs to .../login (Gradio answers 400) per address; past the limit the
    address gets 429 with Retry-After until the lockout ends, without reaching the check.
    """

    def __init__(self, app: Any, throttle: LoginThrottle) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or not str(scope.get("path", "")).rstrip("/").endswith("/login")
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        key = f"address:{client[0]}"
        wait = self.throttle.retry_after(key)
        if wait > 0:
            body = (
                b'{"detail": "Too many failed sign-ins from this address; try again in '
                + str(round(wait)).encode()
                + b' s."}'
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", str(max(1, round(wait))).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        status: list[int] = []

        async def watch(message: Any) -> None:
            if message.get("type") == "http.response.start":
                status.append(int(message.get("status", 0)))
            await send(message)

        # Counted up front, so parallel attempts cannot all pass the check above. A success
        # takes back only its own count: one working account buys no guesses at other names.
        self.throttle.failed(key)
        source = login_source.set(str(client[0]))
        try:
            await self.app(scope, receive, watch)
        finally:
            login_source.reset(source)
        if status and status[0] == 200:
            self.throttle.forgive_one(key)
