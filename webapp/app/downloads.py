"""Export files to download: each in a private folder, served only to the user who made it.

Gradio's own file route (`/gradio_api/file=…`) serves a copy in its shared cache to anyone
signed in who has the URL, and that copy is world-readable on disk. Exports bypass it: they
are written 0600 in 0700 folders and fetched from `/download/<token>`, which checks that the
requesting user made the file.
"""

from __future__ import annotations

import inspect
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import fastapi
import gradio as gr
from fastapi.responses import FileResponse, PlainTextResponse, Response
from gradio.routes import App as GradioApp

from storage.db import StorageUnavailable
from webapp.app.auth import Identity, NotSignedIn

ROUTE = "/download/{token}"
TTL_S = 3600  # a download link works for an hour
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class Downloads:
    """Files written for one user each; `find` returns one only to the user who made it."""

    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="parley-downloads-"))  # mode 0700
        self._ttl_s = ttl_s
        self._clock = clock

    def add(self, user_id: int, name: str, text: str) -> str:
        """Write `text` as `name` for `user_id` (mode 0600, own 0700 folder); return its token."""
        self.prune()
        token = secrets.token_urlsafe(24)
        folder = self.root / f"{user_id}-{token}"
        folder.mkdir(mode=0o700)
        descriptor = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        return token

    def find(self, user_id: int, token: str) -> Path | None:
        """The file of `token` if `user_id` made it and it has not expired; else None."""
        if not _TOKEN.fullmatch(token):
            return None
        folder = self.root / f"{user_id}-{token}"
        try:
            if folder.stat().st_mtime < self._clock() - self._ttl_s:
                return None
            return next(folder.iterdir(), None)
        except OSError:
            return None

    def prune(self) -> None:
        """Delete downloads older than the time they are served for."""
        cutoff = self._clock() - self._ttl_s
        for folder in self.root.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:  # removed meanwhile by another prune
                continue


def link_html(url: str, name: str) -> str:
    """The download link shown in the page."""
    return (
        f'<a href="{escape(url)}" download="{escape(name)}" class="parley-download">'
        f"⬇ {escape(name)}</a>"
    )


def download_url(base: str, token: str) -> str:
    return f"{base}{ROUTE.format(token=quote(token))}"


async def gradio_user(app: GradioApp, request: fastapi.Request) -> str | None:
    """The signed-in user of a request, found as Gradio 6.31's own `/user` route finds it
    (routes.py, get_current_user): the auth dependency, else the login cookie's token."""
    if app.auth_dependency is not None:
        user = app.auth_dependency(request)
        return await user if inspect.isawaitable(user) else user
    cookies = request.cookies
    token = cookies.get(f"access-token-{app.cookie_id}") or cookies.get(
        f"access-token-unsecure-{app.cookie_id}"
    )
    user = app.tokens.get(token) if token else None
    return str(user) if user is not None else None


def add_route(app: GradioApp, downloads: Downloads, identity: Identity) -> None:
    """Serve `downloads` at /download/<token> of the Gradio app, to their owners only."""

    async def download(token: str, request: fastapi.Request) -> Response:
        try:
            name = await gradio_user(app, request)
            person = await identity.person(gr.Request(request=request, username=name))
        except NotSignedIn as exc:
            return PlainTextResponse(str(exc), status_code=401, headers=NO_STORE)
        except StorageUnavailable:
            return PlainTextResponse(
                "The database is not answering; try again in a moment.",
                status_code=503,
                headers=NO_STORE,
            )
        path = downloads.find(person.user_id, token)
        if path is None:
            # Another user's download looks exactly like one that never existed.
            return PlainTextResponse(
                "No such download: links work for an hour, for the person who exported. "
                "Export again from Share and export.",
                status_code=404,
                headers=NO_STORE,
            )
        return FileResponse(
            path, filename=path.name, content_disposition_type="attachment", headers=NO_STORE
        )

    app.add_api_route(ROUTE, download, methods=["GET"], include_in_schema=False)


def base_url(request: Any) -> str:
    """The app's address as the browser reached it, without a trailing slash ("" if unknown)."""
    raw = getattr(request, "request", None)
    if raw is not None and getattr(raw, "base_url", None) is not None:
        return str(raw.base_url).rstrip("/")
    return ""
