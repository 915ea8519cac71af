"""Settings → API keys: create, list and revoke the keys of the OpenAI-compatible /v1 API."""

from __future__ import annotations

from typing import Any

import gradio as gr

from storage import api_keys as store
from storage.models import ApiKey
from webapp.app.api_keys import ApiKeyAuth
from webapp.i18n import t
from webapp.ui.context import PageContext
from webapp.ui.session import SessionState


def _label(key: ApiKey, lang: str) -> str:
    used = (
        key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else t("never used", lang)
    )
    return f"{key.name} · {key.prefix}… · {key.created_at:%Y-%m-%d} · {used}"


class KeysUI:
    """Handlers for the API keys panel; every call works on the signed-in user's keys only."""

    def __init__(self, page: PageContext, auth: ApiKeyAuth) -> None:
        self.page = page
        self.auth = auth

    async def _choices(self, user_id: int, lang: str) -> list[tuple[str, str]]:
        keys = await self.page.db(lambda s: store.list_keys(session=s, user_id=user_id))
        return [(_label(key, lang), key.id) for key in keys]

    async def refresh(self, state: SessionState, request: gr.Request) -> Any:
        """The list of keys (when the panel opens)."""
        user_id = await self.page.user_id(state, request)
        return gr.update(choices=await self._choices(user_id, state.lang), value=None)

    async def create(
        self, name: str, state: SessionState, request: gr.Request
    ) -> tuple[Any, Any, Any]:
        """Make a key and show it once: (note, key list, name box)."""
        user_id = await self.page.user_id(state, request)
        try:
            _, secret = await self.page.db(
                lambda s: store.create_key(session=s, user_id=user_id, name=name or "")
            )
        except (store.KeyRefused, ValueError) as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip(), gr.skip()
        inner = getattr(request, "request", None)
        base = str(inner.base_url) if inner is not None else "/"
        note = (
            t("Your new key (shown only now; copy it):", state.lang)
            + f"\n\n`{secret}`\n\n"
            + t("Use it as an OpenAI API key with the base URL", state.lang)
            + f" `{base.rstrip('/')}/v1`."
        )
        choices = await self._choices(user_id, state.lang)
        return gr.update(value=note, visible=True), gr.update(choices=choices, value=None), ""

    async def revoke(
        self, key_id: str | None, state: SessionState, request: gr.Request
    ) -> tuple[Any, Any]:
        """Revoke the picked key: (note, key list)."""
        user_id = await self.page.user_id(state, request)
        if not key_id:
            gr.Warning(t("Pick a key to revoke first.", state.lang))
            return gr.skip(), gr.skip()
        revoked = await self.page.db(
            lambda s: store.revoke_key(session=s, user_id=user_id, key_id=key_id)
        )
        if revoked:
            self.auth.forget(key_id)
        note = t(
            "Key revoked: it no longer works."
            if revoked
            else "That key does not exist or is not yours.",
            state.lang,
        )
        choices = await self._choices(user_id, state.lang)
        return gr.update(value=note, visible=True), gr.update(choices=choices, value=None)


def build_keys_panel(keys: KeysUI, state: gr.State) -> None:
    """The API keys accordion (inside the Settings column) and its events."""
    with gr.Accordion("API keys", open=False, elem_id="api-keys") as panel:
        gr.Markdown(
            "Keys for Parley's OpenAI-compatible API (`/v1`): SDKs, IDE plugins and "
            "scripts act as you, with your history and limits.",
            elem_id="api-keys-info",
        )
        with gr.Row(equal_height=True):
            name = gr.Textbox(
                label="Key name",
                max_lines=1,
                placeholder="e.g. laptop script",
                elem_id="api-key-name",
                scale=3,
            )
            create = gr.Button("Create key", size="sm", elem_id="api-key-create", scale=1)
        note = gr.Markdown(visible=False, elem_id="api-key-note")
        listed = gr.Dropdown([], label="Your keys", elem_id="api-key-list")
        revoke = gr.Button("Revoke", size="sm", variant="stop", elem_id="api-key-revoke")
    private = "private"
    panel.expand(keys.refresh, [state], [listed], api_visibility=private, show_progress="hidden")
    create.click(keys.create, [name, state], [note, listed, name], api_visibility=private)
    name.submit(keys.create, [name, state], [note, listed, name], api_visibility=private)
    revoke.click(keys.revoke, [listed, state], [note, listed], api_visibility=private)
