"""Team features in the page: share links, export and import, the admin's usage and limits."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import gradio as gr

from storage import accounts, transfer
from storage.models import utc_now
from webapp.app.downloads import Downloads, base_url, download_url, link_html
from webapp.app.export import conversation_json, conversation_markdown, export_all_json
from webapp.app.import_file import ImportRefused, parse_import
from webapp.i18n import t
from webapp.ui.context import PageContext
from webapp.ui.session import SessionState

log = logging.getLogger(__name__)
PERIODS = {
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
}
USAGE_COLUMNS = ["user", "model", "requests", "prompt tokens", "completion tokens", "errors"]
MAX_IMPORT_BYTES = 20_000_000


def export_filename(title: str, suffix: str) -> str:
    stem = re.sub(r"[^\w.-]+", "-", title, flags=re.UNICODE).strip("-.")[:60] or "conversation"
    return f"{stem}{suffix}"


class TeamUI:
    """Handlers for sharing, export/import and administration; every one checks the user."""

    def __init__(
        self,
        page: PageContext,
        downloads: Downloads,
        *,
        sidebar: Callable[[SessionState, str, gr.Request], Awaitable[Any]],
        share_base: str = "/share/",
    ) -> None:
        self.page = page
        self.sidebar = sidebar  # the conversation list again (ChatUI.sidebar), after an import
        self.service = page.service
        self.downloads = downloads
        self.share_base = share_base

    # ---- share links -----------------------------------------------------------------------
    def share_url(self, request: gr.Request, token: str) -> str:
        return f"{base_url(request)}{self.share_base}?token={token}"

    async def share(self, state: SessionState, request: gr.Request) -> str:
        """Create a read-only link to the open conversation."""
        user_id = await self.page.user_id(state, request)
        conversation_id = state.conversation_id
        if not conversation_id:
            raise gr.Error(t("Open a conversation to share it.", state.lang))
        link = await self.page.db(
            lambda s: accounts.create_share(
                session=s, user_id=user_id, conversation_id=conversation_id
            )
        )
        lang = state.lang
        who = t(
            "people who can sign in to Parley"
            if self.service.settings.share_requires_login
            else "anyone with the link",
            lang,
        )
        gr.Info(t("Share link created.", lang))
        return (
            t("Read-only link for {who}:", lang).format(who=who)
            + f"\n\n`{self.share_url(request, link.token)}`\n\n"
            + t("It shows the conversation as it is now and later; **Revoke links** ends it.", lang)
        )

    async def revoke(self, state: SessionState, request: gr.Request) -> str:
        user_id = await self.page.user_id(state, request)
        conversation_id = state.conversation_id
        if not conversation_id:
            raise gr.Error(t("Open a conversation first.", state.lang))
        count = await self.page.db(
            lambda s: accounts.revoke_shares(
                session=s, user_id=user_id, conversation_id=conversation_id
            )
        )
        return f"Revoked {count} link{'s' if count != 1 else ''}." if count else "No live links."

    # ---- export and import -----------------------------------------------------------------
    async def export(self, state: SessionState, kind: str, request: gr.Request) -> Any:
        """Write the open conversation as Markdown or JSON; return the file for download."""
        user_id = await self.page.user_id(state, request)
        conversation_id = state.conversation_id
        if not conversation_id:
            raise gr.Error(t("Open a conversation to export it.", state.lang))
        conversation, messages = await self.page.db(
            lambda s: transfer.export_conversation(
                session=s, user_id=user_id, conversation_id=conversation_id
            )
        )

        def write() -> str:  # large conversations take a while: off the event loop
            if kind == "markdown":
                text = conversation_markdown(conversation, messages)
                name = export_filename(conversation.title, ".md")
            else:
                text = json.dumps(
                    conversation_json(conversation, messages), ensure_ascii=False, indent=2
                )
                name = export_filename(conversation.title, ".json")
            return self._link(request, user_id, name, text)

        return gr.update(value=await asyncio.to_thread(write), visible=True)

    async def export_markdown(self, state: SessionState, request: gr.Request) -> Any:
        return await self.export(state, "markdown", request)

    async def export_json(self, state: SessionState, request: gr.Request) -> Any:
        return await self.export(state, "json", request)

    async def export_everything(self, state: SessionState, request: gr.Request) -> Any:
        """All of the user's own conversations as one JSON file."""
        user_id = await self.page.user_id(state, request)
        items = await self.page.db(lambda s: transfer.export_all(session=s, user_id=user_id))

        def write() -> str:
            text = json.dumps(export_all_json(items), ensure_ascii=False, indent=2)
            return self._link(request, user_id, "parley-export.json", text)

        return gr.update(value=await asyncio.to_thread(write), visible=True)

    def _link(self, request: gr.Request, user_id: int, name: str, text: str) -> str:
        """Store a download for this user only; return the link the page shows."""
        token = self.downloads.add(user_id, name, text)
        return link_html(download_url(base_url(request), token), name)

    async def import_file(
        self, file: Any, state: SessionState, query: str, request: gr.Request
    ) -> Any:
        """Import a conversation JSON export as a new conversation of this user."""
        user_id = await self.page.user_id(state, request)
        path = Path(file if isinstance(file, str) else getattr(file, "name", ""))
        if not path.is_file():
            raise gr.Error(t("No file arrived; pick a Parley JSON export.", state.lang))
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise gr.Error(
                t("The file is larger than {size} MB.", state.lang).format(
                    size=MAX_IMPORT_BYTES // 1_000_000
                )
            )
        limit = self.service.settings.max_message_chars
        try:
            imported = await asyncio.to_thread(
                lambda: parse_import(
                    path.read_bytes(), max_bytes=MAX_IMPORT_BYTES, max_message_chars=limit
                )
            )
        except ImportRefused as exc:
            raise gr.Error(str(exc), title=t("Cannot import", state.lang)) from None
        new_id = await self.page.db(
            lambda s: transfer.import_conversation(session=s, user_id=user_id, imported=imported)
        )
        gr.Info(
            t("Imported as a new conversation: open it from the top of the sidebar.", state.lang)
        )
        log.info("user %s imported conversation %s", user_id, new_id)
        return await self.sidebar(state, query, request)

    # ---- administration ----------------------------------------------------------------------
    async def admin_visible(self, state: SessionState, request: gr.Request) -> Any:
        person = await self.page.person(state, request)
        return gr.update(visible=person.is_admin)

    async def _admin(self, state: SessionState, request: gr.Request) -> None:
        person = await self.page.person(state, request)
        if not person.is_admin:
            raise gr.Error(t("Only admins can see usage and set limits.", state.lang))

    async def usage(self, period: str, state: SessionState, request: gr.Request) -> Any:
        """Requests, tokens and errors per user and model over the chosen period."""
        await self._admin(state, request)
        since = utc_now() - PERIODS.get(period, timedelta(days=1))
        rows = await self.page.db(lambda s: accounts.usage_since(session=s, since=since))
        return [
            [r.username, r.model, r.requests, r.prompt_tokens, r.completion_tokens, r.errors]
            for r in rows
        ]

    async def set_limits(
        self, username: str, rpm: Any, tokens: Any, state: SessionState, request: gr.Request
    ) -> str:
        """Set a user's requests per minute and tokens per day (empty or 0: no limit)."""
        await self._admin(state, request)
        values: dict[str, int | None] = {}
        for field, raw, label in (
            ("rpm_limit", rpm, "Requests per minute"),
            ("daily_token_limit", tokens, "Tokens per day"),
        ):
            text = str(raw if raw is not None else "").strip()
            if not text:
                values[field] = None
                continue
            if not text.isdigit():
                raise gr.Error(
                    t("{label} must be a whole number ≥ 0 (empty: no limit).", state.lang).format(
                        label=t(label, state.lang)
                    )
                )
            values[field] = int(text) or None
        name = (username or "").strip()
        try:
            await self.page.db(
                lambda s: accounts.update_account(session=s, username=name, **values)
            )
        except accounts.AccountError as exc:
            raise gr.Error(str(exc)) from None
        self.page.identity.forget(name)
        parts = [
            f"{values['rpm_limit']} requests/min" if values["rpm_limit"] else "no request limit",
            f"{values['daily_token_limit']:,} tokens/day"
            if values["daily_token_limit"]
            else "no token limit",
        ]
        return f"{name}: {', '.join(parts)}."
