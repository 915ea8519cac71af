"""Presets in the page: pick one to fill every control, save the current settings as one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import gradio as gr

from storage import presets as store
from storage.db import StorageUnavailable
from storage.repository import InvalidId, NotFound
from webapp.app.error_text import DATABASE_DOWN
from webapp.app.presets import (
    PresetError,
    PresetValues,
    check,
    choices,
    db_value,
    find_shipped,
    parse_choice,
)
from webapp.i18n import t
from webapp.ui import controls
from webapp.ui.context import PageContext
from webapp.ui.handlers.events import PARAM_CONTROLS
from webapp.ui.outputs import HIDDEN, PRIVATE, Outputs
from webapp.ui.session import SessionState

# What applying a preset fills in, and what saving one reads, by name (webapp/ui/outputs.py).
PRESET_SETTINGS = Outputs("system", "provider", "model", "tools_box", "tool_choice", PARAM_CONTROLS)
Updates = tuple[Any, ...]
T = TypeVar("T")


@contextlib.contextmanager
def _refused(lang: str = "en") -> Iterator[None]:
    """Preset failures become a message in the page (in `lang`), not a crash."""
    try:
        yield
    except (NotFound, InvalidId):
        raise gr.Error(
            t("That preset no longer exists or is not yours.", lang),
            title=t("Preset not found", lang),
        ) from None
    except PresetError as exc:
        raise gr.Error(t(str(exc), lang), title=t("Preset not saved", lang)) from None
    except StorageUnavailable:
        raise gr.Error(t(DATABASE_DOWN, lang), title=t("Database unavailable", lang)) from None


class PresetsUI:
    """Handlers for presets; each one checks who is asking and reads their presets only."""

    def __init__(self, page: PageContext) -> None:
        self.page = page
        self.service = page.service

    async def _db(self, work: Callable[[Any], T], lang: str = "en") -> T:
        with _refused(lang):
            return await self.service.db(work)

    async def _choices(self, user_id: int, value: str | None = None) -> Any:
        stored = await self._db(lambda s: store.list_presets(session=s, user_id=user_id))
        return gr.update(choices=[c.pair() for c in choices(stored)], value=value)

    async def choices(self, state: SessionState, request: gr.Request) -> Any:
        """The Dropdown's entries for this user: team, shipped, then their own presets."""
        user_id = await self.page.user_id(state, request)
        return await self._choices(user_id)

    async def team_visible(self, state: SessionState, request: gr.Request) -> Any:
        """Only admins see the "Team preset" checkbox."""
        person = await self.page.person(state, request)
        return gr.update(visible=person.is_admin, value=False)

    async def _values(self, choice_value: str, user_id: int) -> PresetValues:
        with _refused():
            kind, key = parse_choice(choice_value)
            if kind == "shipped":
                return find_shipped(key).values
        row = await self._db(lambda s: store.get_preset(session=s, user_id=user_id, preset_id=key))
        return PresetValues(
            name=row.name,
            system_prompt=row.system_prompt,
            provider=row.provider,
            model=row.model,
            parameters=dict(row.parameters),
            tools=tuple(row.tools),
            tool_choice=row.tool_choice,
        )

    async def apply(
        self, choice_value: str | None, state: SessionState, request: gr.Request
    ) -> Updates:
        """Fill the chat's settings (PRESET_SETTINGS) from a preset."""
        if not choice_value:
            return PRESET_SETTINGS.skip()
        user_id = await self.page.user_id(state, request)
        values = await self._values(choice_value, user_id)
        provider, model = await self._provider_model(values, state)
        known = self.service.tools.names()
        tools = [name for name in values.tools if name in known]
        if len(tools) < len(values.tools):
            missing = ", ".join(n for n in values.tools if n not in known)
            gr.Warning(
                t(
                    "This preset offers tools that are no longer installed: {missing}.",
                    state.lang,
                ).format(missing=missing)
            )
        choice = values.tool_choice
        if choice not in ("auto", "none", "required", *tools):
            choice = "auto"
        gr.Info(t("Preset “{name}” applied.", state.lang).format(name=values.name))
        return PRESET_SETTINGS.pack(
            system=values.system_prompt,
            provider=provider,
            model=model,
            tools_box=tools,
            tool_choice=choice,
            params=controls.show(values.parameters),
        )

    async def _provider_model(self, values: PresetValues, state: SessionState) -> tuple[Any, Any]:
        """Provider and model updates; an empty one in the preset keeps the current control."""
        if values.provider in {p.name for p in self.page.settings.providers}:
            model, _ = await self.page.model_choices(values.provider, state, current=values.model)
            return values.provider, model
        if values.provider:
            gr.Warning(
                t(
                    "This preset uses provider {provider}, which is not configured here; the "
                    "current provider is kept.",
                    state.lang,
                ).format(provider=repr(values.provider))
            )
        return gr.skip(), (gr.update(value=values.model) if values.model else gr.skip())

    # gr.Request comes first: Gradio injects it only into positional parameters, and the
    # parameter controls arrive as *params.
    async def save(
        self,
        request: gr.Request,
        state: SessionState,
        name: str,
        team: bool,
        system: str,
        provider: str,
        model: str,
        tools: Any,
        tool_choice: Any,
        *params: Any,
    ) -> Updates:
        """Save the current settings as a preset; return the refreshed Dropdown and a note."""
        person = await self.page.person(state, request)
        if team and not person.is_admin:
            raise gr.Error(
                t("Only admins can publish team presets.", state.lang),
                title=t("Preset not saved", state.lang),
            )
        if not (name or "").strip():
            raise gr.Error(
                t("Give the preset a name first.", state.lang),
                title=t("Preset not saved", state.lang),
            )
        with _refused(state.lang):
            values = check(
                PresetValues(
                    name=name,
                    system_prompt=system or "",
                    provider=provider or "",
                    model=model or "",
                    parameters=controls.collect(params),
                    tools=tuple(tools or ()),
                    tool_choice=tool_choice or "auto",
                ),
                self.service.tools,
                self.page.settings.max_message_chars,
            )
        row = await self._db(
            lambda s: store.save_preset(
                session=s,
                user_id=person.user_id,
                name=values.name,
                team=bool(team),
                is_admin=person.is_admin,
                system_prompt=values.system_prompt,
                provider=values.provider,
                model=values.model,
                parameters=dict(values.parameters),
                tools=values.tools,
                tool_choice=values.tool_choice,
            ),
            state.lang,
        )
        where = "team preset" if row.team else "preset"
        return (
            await self._choices(person.user_id, db_value(row.id)),
            f"Saved {where} “{row.name}”.",
        )

    async def delete(
        self, choice_value: str | None, state: SessionState, request: gr.Request
    ) -> Updates:
        """Delete the picked preset (team presets: admins only); shipped ones stay."""
        person = await self.page.person(state, request)
        if not choice_value:
            raise gr.Error(t("Pick a preset to delete.", state.lang))
        with _refused(state.lang):
            kind, key = parse_choice(choice_value)
        if kind == "shipped":
            raise gr.Error(t("Shipped presets cannot be deleted.", state.lang))

        def work(session: Any) -> str:
            name = store.get_preset(session=session, user_id=person.user_id, preset_id=key).name
            store.delete_preset(
                session=session, user_id=person.user_id, is_admin=person.is_admin, preset_id=key
            )
            return name

        name = await self._db(work, state.lang)
        return await self._choices(person.user_id), t(
            "Deleted preset “{name}”.", state.lang
        ).format(name=name)


@dataclass(frozen=True, slots=True)
class PresetComponents:
    """The components of the Presets accordion."""

    accordion: gr.Accordion
    dropdown: gr.Dropdown
    name: gr.Textbox
    team: gr.Checkbox
    save: gr.Button
    delete: gr.Button
    status: gr.Markdown


def build_presets_row(ui: PresetsUI) -> PresetComponents:
    """Create the Presets accordion where it is called (inside a Blocks layout)."""
    with gr.Accordion("Presets", open=False, elem_id="presets") as accordion:
        dropdown = gr.Dropdown(
            [c.pair() for c in choices(())],
            value=None,
            label="Preset",
            info="Picking one fills every setting below.",
            elem_id="preset",
        )
        name = gr.Textbox(
            label="Name",
            max_lines=1,
            placeholder="Name for the current settings",
            elem_id="preset-name",
        )
        team = gr.Checkbox(label="Team preset (admins)", value=False, elem_id="preset-team")
        with gr.Row():
            save = gr.Button("Save as preset", size="sm", elem_id="save-preset")
            delete = gr.Button("Delete", size="sm", variant="stop", elem_id="delete-preset")
        status = gr.Markdown(elem_id="preset-status")
    return PresetComponents(accordion, dropdown, name, team, save, delete, status)


def wire_presets(
    components: PresetComponents,
    ui: PresetsUI,
    *,
    state: gr.State,
    settings_panel: object,
    demo: gr.Blocks,
) -> None:
    """Wire the Presets accordion's events; call inside the same Blocks as the layout.
    `settings_panel` holds the chat's settings controls by name (PRESET_SETTINGS)."""
    c = components
    settings = PRESET_SETTINGS.components(settings_panel)
    # .input, not .change: refreshing the choices after a save must not re-apply a preset.
    # .select: Gradio 6.31 fires a Dropdown's .input twice per pick (the preset applied twice).
    # Picking a preset refills every setting: no progress overlay on each of them.
    c.dropdown.select(
        ui.apply, [c.dropdown, state], settings, api_visibility=PRIVATE, show_progress=HIDDEN
    )
    save_inputs = [state, c.name, c.team, *settings]
    for trigger in (c.save.click, c.name.submit):
        trigger(ui.save, save_inputs, [c.dropdown, c.status], api_visibility=PRIVATE)
    c.delete.click(ui.delete, [c.dropdown, state], [c.dropdown, c.status], api_visibility=PRIVATE)
    demo.load(ui.choices, [state], [c.dropdown], api_visibility=PRIVATE, show_progress=HIDDEN)
    demo.load(ui.team_visible, [state], [c.team], api_visibility=PRIVATE, show_progress=HIDDEN)
