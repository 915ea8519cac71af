"""Header mode: a page, not Gradio's JSON, when the sign-in proxy did not say who is asking.

Gradio answers a page request whose `auth_dependency` found no user with a 401 and a JSON body
(`{"detail": {"error": "Not authenticated", ...}}`). A browser shows that raw. This middleware
replaces it, for page requests only (API clients keep the JSON), with a short page in the
viewer's language saying what happened and who can fix it.
"""

from __future__ import annotations

import html

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webapp.i18n import pick_language, t

TITLE = "Parley does not know who you are"
EXPLANATION = (
    "The sign-in proxy in front of Parley did not identify you: the request reached "
    "Parley without a user name from it."
)
FIX = (
    "Reload the page, or sign in again through your company's sign-in page. If this keeps "
    "happening, ask whoever runs Parley to check the proxy (AUTH_HEADER and "
    "TRUSTED_PROXIES)."
)


def unidentified_page(lang: str) -> bytes:
    """The page's HTML in `lang`: no script, nothing loaded."""
    title, explanation, fix = (html.escape(t(text, lang)) for text in (TITLE, EXPLANATION, FIX))
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>body{{font-family:system-ui,sans-serif;"
        "max-width:36em;margin:4em auto;padding:0 1em;line-height:1.5}</style></head>"
        f"<body><h1>{title}</h1><p>{explanation}</p><p>{fix}</p></body></html>"
    ).encode()


def _page_request(headers: Headers) -> bool:
    """A browser asking for a page (not the page's own API calls)."""
    mode = headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate"
    return "text/html" in headers.get("accept", "")


class UnidentifiedPage:
    """Turns Gradio's 401 JSON for a page request into unidentified_page()."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        if headers is None or scope.get("method") != "GET" or not _page_request(headers):
            await self.app(scope, receive, send)
            return
        lang = pick_language(None, headers.get("accept-language"))
        replaced = False

        async def send_page(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message.get("status") == 401:
                replaced = True
                body = unidentified_page(lang)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
            if not replaced:
                await send(message)

        await self.app(scope, receive, send_page)
