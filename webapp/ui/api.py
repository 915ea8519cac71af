"""The public `/chat` API endpoint: same turns, same history as the UI."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator

import gradio as gr

from storage import repository as repo
from webapp.chat import ChatService, NewMessage, TurnRefused, TurnSettings
from webapp.params import ParamError
from webapp.ui.session import LOCAL_USER

MAX_PARAMETERS_JSON = 64_000


class ChatAPI:
    """Adapter from the API's four strings to a ChatService turn."""

    def __init__(self, service: ChatService) -> None:
        self.service = service

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
        and may name a "provider". With n > 1 the first choice is returned.
        """
        settings = self.service.settings
        if len(parameters_json) > MAX_PARAMETERS_JSON:
            raise gr.Error(f"parameters_json is larger than {MAX_PARAMETERS_JSON:,} characters.")
        try:
            params = json.loads(parameters_json) if parameters_json.strip() else {}
        except json.JSONDecodeError as exc:
            raise gr.Error(
                f"parameters_json is not valid JSON: {exc.msg} at column {exc.colno}"
            ) from None
        if not isinstance(params, dict):
            raise gr.Error('parameters_json must be a JSON object, e.g. {"temperature": 0.5}')
        provider = str(params.pop("provider", "") or settings.default_provider)
        if not model.strip() and provider == settings.default_provider:
            model = settings.default_model
        username = request.username or LOCAL_USER
        user = await self.service.db(lambda s: repo.ensure_user(session=s, username=username))
        user_id = user.id
        assert user_id is not None
        turn = TurnSettings(provider=provider, model=model, params=params)
        try:
            if conversation_id.strip():
                existing = await self.service.db(lambda s: repo.get_conversation(
                    session=s, user_id=user_id, conversation_id=conversation_id.strip()))
                turn = TurnSettings(provider=provider, model=model, params=params,
                                    system_prompt=existing.system_prompt)
            stream = self.service.stream_turn(
                user_id=user_id, conversation_id=conversation_id.strip() or None,
                action=NewMessage(message), turn=turn)
            update = await anext(stream)
        except repo.InvalidId:
            raise gr.Error(
                f"conversation_id {conversation_id!r} is malformed: use the id returned by an "
                "earlier call, or an empty string for a new one."
            ) from None
        except repo.NotFound:
            raise gr.Error(f"No conversation {conversation_id!r}: it does not exist or is not "
                           "yours. Use an empty string to start a new one.") from None
        except ParamError as exc:
            raise gr.Error("Invalid parameters: " + "; ".join(exc.errors)) from None
        except TurnRefused as exc:
            raise gr.Error(str(exc)) from None
        yield "", update.conversation_id
        async with contextlib.aclosing(stream):
            async for update in stream:
                answer = update.progress.choices[0].content
                if update.state == "error":
                    answer += ("\n\n" if answer else "") + f"[error] {update.error}"
                yield answer, update.conversation_id
