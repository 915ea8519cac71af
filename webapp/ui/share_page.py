"""The read-only page behind a share link: /share/?token=..."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import gradio as gr
from sqlmodel import Session

from storage import accounts
from storage import repository as repo
from webapp.i18n import pick_language, t
from webapp.safe_markup import LATEX_MARKDOWN, safe_markdown
from webapp.ui.app import LATEX
from webapp.ui.render import render_path

GONE = "### This link does not exist or was revoked\nAsk the person who shared it for a new one."
SHARED = "Shared from Parley · read-only"


class SharePage:
    """Loads the conversation behind a token; nothing on this page can change it."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory

    async def load(self, request: gr.Request) -> tuple[Any, Any]:
        token = str(request.query_params.get("token", ""))
        # No language switch here: the page follows the browser's language.
        lang = pick_language(None, request.headers.get("accept-language"))

        def work() -> tuple[Any, Any]:
            with self._session_factory() as session:
                return accounts.shared_conversation(session=session, token=token)

        try:
            conversation, messages = await asyncio.to_thread(work)
        except repo.NotFound:
            return t(GONE, lang), gr.update(visible=False)
        path = repo.active_path(messages, conversation.current_leaf_id)
        title = f"### {conversation.title}\n{t(SHARED, lang)}"
        if conversation.model:
            title += f" · {conversation.model}"
        # The title is the sharer's text, shown to another viewer: as safe as the messages.
        return (safe_markdown(title, latex=LATEX_MARKDOWN),
                gr.update(value=render_path(path, lang=lang).messages, visible=True))


def build_share_page(page: SharePage) -> gr.Blocks:
    """A minimal Blocks app: a title and a read-only Chatbot."""
    with gr.Blocks(title="Parley · shared conversation") as demo:
        title = gr.Markdown("Loading…", elem_id="share-title")
        chatbot = gr.Chatbot(elem_id="share-chat", show_label=False, height="80vh",
                             latex_delimiters=LATEX, sanitize_html=True, render_markdown=True,
                             buttons=["copy"])
        demo.load(page.load, None, [title, chatbot], api_visibility="private")
    demo.queue(default_concurrency_limit=None)
    return demo
