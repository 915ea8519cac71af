"""The read-only page behind a share link: /share/?token=..."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import gradio as gr
from sqlmodel import Session

from storage import accounts
from storage import repository as repo
from storage.db import unit_of_work
from webapp.i18n import pick_language, t
from webapp.ui.account import signed_in_text
from webapp.ui.app import LATEX
from webapp.ui.render import render_path
from webapp.ui.safe_markup import LATEX_MARKDOWN, safe_markdown

GONE = "### This link does not exist or was revoked\nAsk the person who shared it for a new one."
SHARED = "Shared from Parley · read-only"


class SharePage:
    """Loads the conversation behind a token; nothing on this page can change it."""

    def __init__(self, session_factory: Callable[[], Session], auth_mode: str = "none") -> None:
        self._session_factory = session_factory
        self.auth_mode = auth_mode  # accounts: the header line has Sign out

    async def load(self, request: gr.Request) -> tuple[Any, ...]:
        """(header line, its text, Sign out, title, chat) for the token in the address."""
        token = str(request.query_params.get("token", ""))
        # No language switch here: the page follows the browser's language.
        lang = pick_language(None, request.headers.get("accept-language"))
        name = getattr(request, "username", None)

        def work() -> tuple[Any, repo.Thread | None]:
            with unit_of_work(self._session_factory) as session:
                viewer = accounts.get_user(session=session, username=name) if name else None
                try:
                    return viewer, accounts.shared_conversation(session=session, token=token)
                except repo.NotFound:
                    return viewer, None

        viewer, thread = await asyncio.to_thread(work)
        shown = viewer.username if viewer is not None else name  # as first spelled
        header = (
            gr.update(visible=bool(shown)),
            signed_in_text(shown, lang) if shown else "",
            t("Sign out", lang),
        )
        if thread is None:
            return *header, t(GONE, lang), gr.update(visible=False)
        conversation, path = thread.conversation, thread.path
        title = f"### {conversation.title}\n{t(SHARED, lang)}"
        if conversation.model:
            title += f" · {conversation.model}"
        # The title is the sharer's text, shown to another viewer: as safe as the messages.
        return (
            *header,
            safe_markdown(title, latex=LATEX_MARKDOWN),
            gr.update(value=render_path(path, lang=lang).messages, visible=True),
        )


def build_share_page(page: SharePage) -> gr.Blocks:
    """A minimal Blocks app: who is signed in, a title and a read-only Chatbot."""
    demo: gr.Blocks
    with gr.Blocks(title="Parley · shared conversation") as demo:
        with gr.Row(elem_id="account", visible=False) as account:
            note = gr.Markdown(elem_id="signed-in")
            # page.js signs out with a POST (as on the chat page); hidden behind a sign-in proxy.
            sign_out = gr.Button(
                "Sign out",
                size="sm",
                elem_id="sign-out",
                scale=0,
                min_width=90,
                visible=page.auth_mode == "accounts",
            )
        title = gr.Markdown("Loading…", elem_id="share-title")
        chatbot = gr.Chatbot(
            elem_id="share-chat",
            show_label=False,
            height="80vh",
            latex_delimiters=LATEX,
            sanitize_html=True,
            render_markdown=True,
            buttons=["copy"],
        )
        demo.load(
            page.load,
            None,
            [account, note, sign_out, title, chatbot],
            api_visibility="private",
            show_progress="hidden",
        )
    demo.queue(default_concurrency_limit=None)
    return demo
