"""The Chat tab's settings column: model lists, API keys, tools and MCP, the context
gauge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from webapp.i18n import t
from webapp.ui import controls
from webapp.ui.context import refused_if_missing
from webapp.ui.handlers.base import ChatBase
from webapp.ui.handlers.events import DROP, GAUGE, KEY, MODELS, TOOL_OPTIONS, Updates
from webapp.ui.session import SessionState


class SettingsEvents(ChatBase):
    """The settings column's events and what it shows."""

    def tool_label(self, name: str) -> str:
        """A tool's checkbox label: its name, ✋ when its calls need approval, and "read-only"
        when an MCP server says so (shown only: it does not skip the approval)."""
        tool = self.service.tools.get(name)
        if tool is None:
            return name
        label = f"{name} ✋" if tool.needs_approval else name
        return f"{label} (read-only)" if tool.read_only else label

    def tool_options(self) -> Updates:
        """The Tools panel's choices as the registry has them now (values left as they are)."""
        names = self.service.tools.names()
        return TOOL_OPTIONS.pack(
            tools_box=gr.update(choices=[(self.tool_label(name), name) for name in names]),
            tool_choice=gr.update(choices=["auto", "none", "required", *names]),
        )

    def mcp_credential_fields(self) -> list[tuple[str, list[str]]]:
        """Each {{user.NAME}} the MCP servers' headers ask for, with the servers asking."""
        fields: dict[str, list[str]] = {}
        for server in self.settings.mcp_servers:
            for name in server.user_fields:
                fields.setdefault(name, []).append(server.name)
        return list(fields.items())

    def credential_setter(
        self, name: str
    ) -> Callable[[str, SessionState], tuple[Any, str, SessionState]]:
        """The handler storing this session's value of {{user.NAME}} (in memory, never saved)."""

        def set_credential(value: str, state: SessionState) -> tuple[Any, str, SessionState]:
            if value.strip():
                state.mcp_credentials[name] = value.strip()
                note = f"✓ {name} set for this browser session only."
            else:
                state.mcp_credentials.pop(name, None)
                note = f"{name} cleared."
            return gr.update(value=""), note, state

        return set_credential

    def mcp_panel(self) -> str:
        """The Tools panel's lines about MCP servers: each one's tools, or why it is missing."""
        rows = self.mcp_status() if self.mcp_status is not None else []
        if not rows:
            return ""
        lines = ["**MCP servers**"]
        for row in rows:
            names = [t.name for t in self.service.tools.tools() if t.group == row["name"]]
            if row["state"] == "ready":
                lines.append(f"- {row['name']}: {', '.join(names) or 'no tools'}")
            else:
                reason = row.get("reason") or row["state"]
                lines.append(f"- {row['name']}: not available — {reason}")
        return "\n".join(lines)

    async def models_for(
        self, provider: str, state: SessionState, refresh: bool = False, current: str = ""
    ) -> Updates:
        """The model list for a provider and the note under it (MODELS)."""
        models, note = await self.model_choices(provider, state, refresh=refresh, current=current)
        return MODELS.pack(model=models, models_note=note)

    async def models_on_load(self, provider: str, state: SessionState) -> Updates:
        """The model list when the page loads, unless a conversation opened from the address
        already filled it (with that conversation's model)."""
        if state.conversation_id:
            return MODELS.skip()
        return await self.models_for(provider, state)

    async def models_note(self, provider: str, model: str, state: SessionState) -> str:
        """The note under the model list, in the page's language (after a language switch)."""
        _, note = await self.model_choices(provider, state, current=model or "")
        return note

    async def gauge(
        self, state: SessionState, provider: str, model: str, system: str, request: gr.Request
    ) -> Updates:
        """The context gauge under the box, and the offer shown when a send would not fit."""
        user_id = await self.user_id(state, request)
        known = state.context_used
        if state.conversation_id and known and known[0] == state.conversation_id:
            gauge = self.service.gauge(provider, model or "", used=known[1], estimated=known[2])
        else:
            with refused_if_missing(state.lang):
                gauge = await self.service.context_gauge(
                    user_id=user_id,
                    conversation_id=state.conversation_id,
                    provider=provider,
                    model=model or "",
                    system_prompt=system or "",
                )
        offer = gr.update(visible=state.context_full)
        if gauge is None:
            return GAUGE.pack(gauge=gr.update(value="", visible=False), context_offer=offer)
        shown = gr.update(
            value=gauge.text(state.lang), visible=True, elem_classes=[f"context-{gauge.level}"]
        )
        return GAUGE.pack(gauge=shown, context_offer=offer)

    def drop_oldest(self, state: SessionState) -> Updates:
        """From now on this conversation's requests leave out the turns that do not fit."""
        state.fit_context_for, state.context_full = state.conversation_id, False
        return DROP.pack(state=state, context_offer=gr.update(visible=False))

    def capabilities_for(self, provider: str, model: str) -> list[Any]:
        config = self.settings.provider(provider)
        caps = self.service.capabilities.lookup(model or "", config.kind, config.name)
        return controls.visibility(caps, config.kind)

    def key_banner(self, state: SessionState) -> str:
        missing = [
            p
            for p in self.settings.providers
            if p.kind != "openai" and not p.api_key and not state.api_keys.get(p.name)
        ]
        if len(missing) < len([p for p in self.settings.providers if p.kind != "openai"]):
            return ""
        names = " / ".join(f"`{p.key_env}`" for p in missing)
        return t(
            "⚠ **No API key configured.** Set {names} in `.env` and restart, or paste a key "
            "under **Settings → API key** (kept in server memory for this browser session "
            "only, never saved).",
            state.lang,
        ).format(names=names)

    async def set_key(self, key: str, provider: str, state: SessionState) -> Updates:
        config = self.settings.provider(provider)
        if key.strip():
            state.api_keys[provider] = key.strip()
            status = f"✓ Using your key for {config.label} in this browser session only."
        else:
            state.api_keys.pop(provider, None)
            status = f"Using the server's {config.key_env}." if config.api_key else ""
        models, note = await self.model_choices(provider, state, refresh=True)
        return KEY.pack(
            key_box=gr.update(value=""),
            key_status=gr.update(value=status, visible=bool(status)),
            state=state,
            banner=self.key_banner(state),
            model=models,
            models_note=note,
        )
