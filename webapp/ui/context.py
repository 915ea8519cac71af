"""What every panel's handlers share: who is asking, one unit of database work, and the model
lists. ChatUI, CompareUI, PresetsUI, TeamUI and KeysUI each take a PageContext instead of
borrowing these from one another."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gradio as gr

from storage import repository as repo
from storage.db import StorageUnavailable
from webapp.app.auth import Identity, NotSignedIn, Person
from webapp.app.chat import ChatService
from webapp.app.error_text import model_list_note, refusal_message
from webapp.i18n import t
from webapp.provider.catalog import ModelCatalog
from webapp.ui.session import SessionState

T = TypeVar("T")


def refusal(exc: Exception, lang: str = "en") -> gr.Error:
    """A refused request as the page's error toast, in `lang`."""
    title, message = refusal_message(exc, lang)
    return gr.Error(message, title=title)


@contextlib.contextmanager
def refused_if_missing(lang: str = "en") -> Iterator[None]:
    """A conversation that is gone (or another user's) is refused with a message, not a crash;
    so is an unreachable database."""
    try:
        yield
    except (repo.NotFound, repo.InvalidId, StorageUnavailable) as exc:
        raise refusal(exc, lang) from None


class PageContext:
    """Identity, database work and model lists for the page's handlers."""

    def __init__(self, service: ChatService, catalog: ModelCatalog, identity: Identity) -> None:
        self.service = service
        self.catalog = catalog
        self.identity = identity
        self.settings = service.settings

    async def person(self, state: SessionState, request: gr.Request | None) -> Person:
        """The signed-in user for this event (checked on every event, never trusted from state)."""
        try:
            with refused_if_missing(state.lang):
                person = await self.identity.person(request)
        except NotSignedIn as exc:
            raise gr.Error(str(exc), title=t("Not signed in", state.lang)) from None
        if state.user_id != person.user_id:  # a different account in this tab: start clean
            state.conversation_id, state.message_ids, state.focus_id = None, [], None
            state.api_keys.clear()  # a pasted key must never bill the next person
            state.mcp_credentials.clear()
        state.username, state.user_id = person.username, person.user_id
        return person

    async def user_id(self, state: SessionState, request: gr.Request | None) -> int:
        return (await self.person(state, request)).user_id

    async def db(self, work: Callable[[Any], T]) -> T:
        """One unit of database work; a missing or foreign record becomes a clear message."""
        with refused_if_missing():
            return await self.service.db(work)

    async def model_choices(
        self, provider: str, state: SessionState, refresh: bool = False, current: str = ""
    ) -> tuple[Any, str]:
        """The model Dropdown's update (choices and the model to show) and the note under it."""
        config = self.settings.provider(provider)
        listing = await self.catalog.models(
            provider, state.api_keys.get(provider, ""), refresh=refresh
        )
        value = current or self.settings.default_model_for(provider)
        value = value or (listing.models[0] if listing.models else "")
        if refresh and listing.live:
            gr.Info(
                t("{count} models listed by {provider}.", state.lang).format(
                    count=len(listing.models), provider=config.label
                )
            )
        note = model_list_note(listing, config.label, state.lang)
        return gr.update(choices=list(listing.models), value=value), note
