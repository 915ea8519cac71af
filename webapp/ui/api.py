"""The public Gradio API: `/chat` (same turns, same history as the UI), `/attach` (follow a
conversation's live answer) and `/stop`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import gradio as gr

from storage import repository as repo
from storage.db import StorageUnavailable
from storage.field_limits import shown
from webapp.app.auth import Identity, NotSignedIn
from webapp.app.chat import UPDATE_INTERVAL_S, ChatService, TurnRefused, TurnUpdate
from webapp.app.chat_request import NewMessage
from webapp.app.error_text import DATABASE_DOWN, user_message
from webapp.core.params import ParamError, parse_params_json

INPUTS = {
    "message": "",
    "conversation_id": ': send "" to start a new conversation',
    "model": ': send "" for the default model',
    "parameters_json": ': send "{}" for none',
}


def kind_of(value: Any) -> str:
    """How a JSON value is named in messages: "null", "a number", "an object", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


def check_inputs(values: tuple[Any, ...]) -> None:
    """Refuse any input that is not a string (the inputs arrive as sent: no preprocessing)."""
    for (name, hint), value in zip(INPUTS.items(), values, strict=True):
        if not isinstance(value, str):
            raise gr.Error(f"{name} must be text (a string), not {kind_of(value)}{hint}")


class ChatAPI:
    """Adapter from the API's four strings to a ChatService turn."""

    def __init__(
        self, service: ChatService, identity: Identity, default_tools: tuple[str, ...] = ()
    ) -> None:
        self.service = service
        self.identity = identity
        self.default_tools = default_tools

    async def chat(
        self,
        message: str,
        conversation_id: str,
        model: str,
        parameters_json: str,
        request: gr.Request,
    ) -> AsyncGenerator[tuple[str, str], None]:
        """Send `message` and stream (answer_so_far, conversation_id).

        An empty conversation_id starts a new conversation; an empty model uses the default.
        parameters_json is a JSON object of request parameters (temperature, max_tokens, ...)
        and may name a "provider", "tools" (a list of tool names to offer; absent means the
        conversation's default) and "tool_choice". Tools run as in the UI; a tool that needs a
        person's approval is not run. With n > 1 the first choice is returned.

        Long: the public API's arguments checked one by one (each refusal worded for a program)
        before one turn."""
        settings = self.service.settings
        check_inputs((message, conversation_id, model, parameters_json))
        try:
            params = parse_params_json(parameters_json, "parameters_json")
        except ParamError as exc:
            raise gr.Error("; ".join(exc.errors)) from None
        provider = params.pop("provider", "") or settings.default_provider
        if not isinstance(provider, str):
            raise gr.Error(
                f'"provider" must be a provider name (a string), not {kind_of(provider)}'
            )
        tools = params.pop("tools", None)  # None: the conversation's (or the server's) default
        tool_choice = params.pop("tool_choice", None)
        if tools is not None and not (
            isinstance(tools, list) and all(isinstance(t, str) for t in tools)
        ):
            raise gr.Error('"tools" must be a list of tool names, e.g. ["calculator"]')
        if tool_choice is not None and not isinstance(tool_choice, str):
            raise gr.Error('"tool_choice" must be "auto", "none", "required" or a tool name')
        if not model.strip() and provider == settings.default_provider:
            model = settings.default_model_for(provider)
        try:
            person = await self.identity.person(request)
        except NotSignedIn as exc:
            raise gr.Error(str(exc)) from None
        except StorageUnavailable:
            raise gr.Error(DATABASE_DOWN) from None
        user_id = person.user_id
        try:
            turn = await self.service.unattended_turn(
                user_id=user_id,
                conversation_id=conversation_id.strip() or None,
                provider=provider,
                model=model,
                params=params,
                tools=tools,
                tool_choice=tool_choice,
                default_tools=self.default_tools,
            )
            stream = self.service.stream_turn(
                user_id=user_id,
                conversation_id=conversation_id.strip() or None,
                action=NewMessage(message),
                turn=turn,
                username=person.username,
            )
            update = await anext(stream)
        except repo.InvalidId:
            raise gr.Error(
                f"conversation_id {shown(conversation_id)} is malformed: use the id returned by "
                "an earlier call, or an empty string for a new one."
            ) from None
        except repo.NotFound:
            raise gr.Error(
                f"No conversation {shown(conversation_id)}: it does not exist or is "
                "not yours. Use an empty string to start a new one."
            ) from None
        except ParamError as exc:
            raise gr.Error("Invalid parameters: " + "; ".join(exc.errors)) from None
        except TurnRefused as exc:
            raise gr.Error(str(exc)) from None
        except StorageUnavailable:
            raise gr.Error(DATABASE_DOWN) from None
        # A client that goes away only stops watching: the answer goes on and is saved.
        async with contextlib.aclosing(stream):
            yield "", update.conversation_id
            async for update in stream:
                yield answer_text(update), update.conversation_id

    async def attach(
        self, conversation_id: str, request: gr.Request
    ) -> AsyncGenerator[tuple[str, str], None]:
        """Stream (answer_so_far, conversation_id) of the conversation's live answer from its
        start to its end, as /chat does; with no answer streaming, the stored last answer at
        once. A comparison gives its first column."""
        user_id, conversation_id = await self._owned(conversation_id, request)
        runs = await self.service.runs.find(user_id, conversation_id)
        runs.sort(key=lambda run: getattr(run.snapshot, "index", 0))
        if not runs:
            yield await self._stored_answer(user_id, conversation_id), conversation_id
            return
        first: TurnUpdate = runs[0].snapshot
        async for _ in self.service.runs.watch(runs[:1], UPDATE_INTERVAL_S):
            yield answer_text(first), conversation_id
        if first.state == "streaming":  # followed from another process, its end not seen
            yield await self._stored_answer(user_id, conversation_id), conversation_id

    async def stop(self, conversation_id: str, request: gr.Request) -> str:
        """Stop the conversation's live answer (saved as stopped); returns what happened."""
        user_id, conversation_id = await self._owned(conversation_id, request)
        stopped = await self.service.stop(user_id, conversation_id)
        return (
            f"stopped {stopped} answer{'s' if stopped != 1 else ''}"
            if stopped
            else "no answer was streaming"
        )

    async def _owned(self, conversation_id: Any, request: gr.Request) -> tuple[int, str]:
        """The caller's user id and the conversation id, checked: it exists and is theirs."""
        if not isinstance(conversation_id, str):
            raise gr.Error(
                f"conversation_id must be text (a string), not {kind_of(conversation_id)}"
            )
        try:
            person = await self.identity.person(request)
        except NotSignedIn as exc:
            raise gr.Error(str(exc)) from None
        except StorageUnavailable:
            raise gr.Error(DATABASE_DOWN) from None
        wanted = conversation_id.strip()
        try:
            await self.service.db(
                lambda s: repo.get_conversation(
                    session=s, user_id=person.user_id, conversation_id=wanted
                )
            )
        except repo.InvalidId:
            raise gr.Error(
                f"conversation_id {shown(conversation_id)} is malformed: use the id "
                "returned by /chat."
            ) from None
        except repo.NotFound:
            raise gr.Error(
                f"No conversation {shown(conversation_id)}: it does not exist or is not yours."
            ) from None
        except StorageUnavailable:
            raise gr.Error(DATABASE_DOWN) from None
        return person.user_id, wanted

    async def _stored_answer(self, user_id: int, conversation_id: str) -> str:
        def work(session: Any) -> str:
            path = repo.load_thread(
                session=session, user_id=user_id, conversation_id=conversation_id
            ).path
            last_user = max((i for i, m in enumerate(path) if m.role == "user"), default=-1)
            answers = [m for m in path[last_user + 1 :] if m.role == "assistant"]
            text = "\n\n".join(m.content for m in answers if m.content)
            final = answers[-1] if answers else None
            if final is not None and final.error:
                mark = "error" if final.state == "error" else "note"
                text += ("\n\n" if text else "") + f"[{mark}] {user_message(final.error)}"
            return text

        return await self.service.db(work)


def answer_text(update: TurnUpdate) -> str:
    """What the API streams: the answer so far (every tool round's text), then any error."""
    progress = update.progress
    answer = "\n\n".join(
        [r.content for r in progress.rounds if r.content]
        + ([progress.choices[0].content] if progress.choices[0].content else [])
    )
    if update.error:
        mark = "error" if update.state == "error" else "note"
        answer += ("\n\n" if answer else "") + f"[{mark}] {user_message(update.error)}"
    return answer
