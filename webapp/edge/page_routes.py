"""Routes the page itself uses besides Gradio's: its script, and "load image".

GET /parley/image?url=… is what a "load image" link in model output points at
(webapp/ui/safe_markup.py); page.js fetches it when the viewer clicks one. It answers signed-in
users only, the way Gradio decides who is signed in, and only requests from Parley's own page.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from types import SimpleNamespace

import fastapi
from fastapi.responses import PlainTextResponse, Response
from gradio.routes import App as GradioApp

from webapp.app.auth import Identity, NotSignedIn
from webapp.edge.image_fetch import ImageFetcher, ImageFetchError
from webapp.ui import presentation
from webapp.ui.safe_markup import IMAGE_ENDPOINT

log = logging.getLogger(__name__)
IMAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, max-age=3600",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Disposition": "inline",
}


def _gradio_user(gradio_app: GradioApp, request: fastapi.Request) -> str | None:
    """The user Gradio's own routes would see for this request (its token cookies)."""
    cookie_id = gradio_app.cookie_id
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
        f"access-token-unsecure-{cookie_id}"
    )
    return gradio_app.tokens.get(token) if token else None


async def _signed_in_as(gradio_app: GradioApp, request: fastapi.Request) -> str | None:
    if gradio_app.auth_dependency is not None:
        name = gradio_app.auth_dependency(request)
        return str(await name if inspect.isawaitable(name) else name or "") or None
    return _gradio_user(gradio_app, request) if gradio_app.auth is not None else None


def add_page_routes(
    app: fastapi.FastAPI,
    *,
    identity: Identity,
    fetcher: ImageFetcher,
    gradio_apps: Callable[[], list[GradioApp]],
) -> None:
    """Register GET /parley/page.js and GET /parley/image on `app` (before Gradio's mount).

    `gradio_apps()` gives the mounted apps, the chat's first: a viewer signed in to any of
    them (the share page signs in on its own) may load images; without sign-in on the chat's
    app (AUTH_MODE=none), everyone is the local user.
    """
    script = presentation.SCRIPT.encode("utf-8")

    @app.get(presentation.SCRIPT_PATH, include_in_schema=False)
    async def page_script() -> Response:
        return Response(
            script,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    async def signed_in(request: fastapi.Request) -> bool:
        mounted = gradio_apps()
        guarded = [a for a in mounted if a.auth is not None or a.auth_dependency is not None]
        name = None
        for gradio_app in guarded:
            name = name or await _signed_in_as(gradio_app, request)
        if not mounted or (mounted[0] in guarded and not name):
            return False
        caller = SimpleNamespace(username=name, client=request.client, headers=request.headers)
        try:
            await identity.person(caller)  # a disabled account is refused here too
        except NotSignedIn:
            return False
        return True

    @app.get(IMAGE_ENDPOINT, include_in_schema=False)
    async def load_image(request: fastapi.Request, url: str = "") -> Response:
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return PlainTextResponse("Images load from Parley's own page only.", 403)
        if not await signed_in(request):
            return PlainTextResponse("Sign in to load images.", 401)
        try:
            image = await fetcher.fetch(url)
        except ImageFetchError as exc:
            log.info("image not loaded (%s): %s", exc.status, exc)
            return PlainTextResponse(str(exc), exc.status, headers={"Cache-Control": "no-store"})
        return Response(image.data, media_type=image.mime, headers=IMAGE_HEADERS)
