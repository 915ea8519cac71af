"""Named presets of chat settings: keyword-only, scoped to one user; the caller's unit of work
commits.

A user sees their own presets and every team preset; only admins publish or delete team
presets. Whether the caller is an admin is decided above this layer and passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from storage.field_limits import PRESET_NAME, TOOL_CHOICE
from storage.models import Preset, utc_now
from storage.repository import NotFound, check_id

NAME_MAX = PRESET_NAME.max_chars
TOOL_CHOICE_MAX = TOOL_CHOICE.max_chars


class PresetError(ValueError):
    """A preset cannot be saved, used or deleted as asked; the message says why."""


def _clean_name(name: str) -> str:
    """Collapse whitespace; refuse an empty or over-long name."""
    cleaned = " ".join((name or "").split())
    if not cleaned or len(cleaned) > NAME_MAX:
        raise PresetError(f"A preset name is 1–{NAME_MAX} characters (got {len(cleaned)}).")
    return cleaned


def _visible_preset(session: Session, user_id: int, preset_id: str) -> Preset:
    """Load one of the user's presets or a team preset; raise NotFound otherwise."""
    check_id(preset_id)
    preset = session.get(Preset, preset_id)
    if preset is None or not (preset.team or preset.user_id == user_id):
        raise NotFound(f"Preset {preset_id} not found")
    return preset


def list_presets(*, session: Session, user_id: int) -> list[Preset]:
    """Every team preset, then the user's own, each group by name."""
    statement = (
        select(Preset)
        .where(or_(col(Preset.team).is_(True), col(Preset.user_id) == user_id))
        .order_by(
            col(Preset.team).desc(), func.lower(Preset.name), col(Preset.name), col(Preset.id)
        )
    )
    return list(session.exec(statement).all())


def get_preset(*, session: Session, user_id: int, preset_id: str) -> Preset:
    """Return one of the user's presets or a team preset."""
    return _visible_preset(session, user_id, preset_id)


def save_preset(
    *,
    session: Session,
    user_id: int,
    name: str,
    team: bool,
    is_admin: bool,
    system_prompt: str = "",
    provider: str = "",
    model: str = "",
    parameters: Mapping[str, Any] | None = None,
    tools: Sequence[str] = (),
    tool_choice: str = "auto",
) -> Preset:
    """Create a preset, or overwrite the one with the same name in the same scope.

    The scope of a private preset is its owner's; team presets share one scope, so an admin
    republishing "Support bot" replaces it rather than adding a second one.
    """
    if team and not is_admin:
        raise PresetError("Only admins can publish team presets.")
    cleaned = _clean_name(name)
    choice = (tool_choice or "auto").strip() or "auto"
    if len(choice) > TOOL_CHOICE_MAX:
        raise PresetError(f"Tool choice is at most {TOOL_CHOICE_MAX} characters.")
    statement = select(Preset).where(col(Preset.team).is_(team), Preset.name == cleaned)
    if not team:
        statement = statement.where(Preset.user_id == user_id)
    preset = session.exec(statement.order_by(col(Preset.created_at))).first()
    if preset is None:
        preset = Preset(user_id=user_id, name=cleaned, team=team)
    preset.system_prompt = system_prompt or ""
    preset.provider = provider or ""
    preset.model = model or ""
    preset.parameters = dict(parameters or {})
    preset.tools = list(tools)
    preset.tool_choice = choice
    preset.updated_at = utc_now()
    session.add(preset)
    session.flush()
    session.refresh(preset)
    return preset


def delete_preset(*, session: Session, user_id: int, is_admin: bool, preset_id: str) -> None:
    """Delete one of the user's presets, or (admins only) a team preset."""
    preset = _visible_preset(session, user_id, preset_id)
    if preset.team and not is_admin:
        raise PresetError("Only admins can delete team presets.")
    session.delete(preset)
    session.flush()
