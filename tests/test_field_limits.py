"""Field limits everywhere (Hardening item 4) and plain type errors on /chat (item 5), through
the running app (FastAPI + Gradio under uvicorn on loopback, the fake upstream behind it) on a
real SQLite file and on PostgreSQL, and through the repository on both databases.

Every refusal must name the field, the limit and the fix, and lose nothing: nothing stored,
nothing sent upstream, nothing logged, and the next normal request still answered.

Item → tests:
- a 5,000,000-character model id: test_a_five_million_character_model_id_*
- a model id with a line break, log lines: test_a_model_id_with_a_line_break_*,
  test_log_lines_escape_control_characters_*
- a 9,000,000-character message in an import (and other imported fields):
  test_an_import_over_a_field_limit_*, test_an_import_at_the_message_limit_*
- max_tokens: test_max_tokens_of_ten_to_the_twelve_*, test_max_tokens_above_a_models_limit_*
- ids, names, titles, presets and the repository's last guard: test_a_preset_over_*,
  test_a_long_title_*, test_the_repository_refuses_*, test_rows_stored_before_*
- /chat with null, numbers, objects, a 5,000-digit seed: test_chat_inputs_of_the_wrong_type_*,
  test_a_five_thousand_digit_seed_*
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from gradio_client.exceptions import AppError
from sqlalchemy import text

from storage import message_rows, transfer
from storage import presets as store
from storage import repository as repo
from storage.field_limits import FieldTooLong
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI
from tests.repo_fixtures import Call
from tests.test_export import _document
from tests.test_hostile_inputs import (
    USER,
    Apps,
    RawFake,
    _sync,
    chat_requests,
    client,
    conversation,
    everything,
    import_file,
    path_of,
    reset,
    run_event,
    still_answers,
    tab,
)
from tests.test_team import handlers
from webapp.observability import HANDLER_NAME, TurnRecord, configure_logging, log_turn

LIMIT_S = 60
MODEL = "Qwen/Qwen3-32B"


# ---- fixtures: one app per database for the module (the hostile corpus's set-up) -------------


@pytest.fixture(scope="module")
def fake() -> Iterator[RawFake]:
    with RawFake() as running:
        yield running


@pytest.fixture(scope="module")
def apps(
    fake: RawFake, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Apps]:
    made = Apps(fake, tmp_path_factory.mktemp("limits"), request)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(apps: Apps, request: pytest.FixtureRequest) -> RunningApp:
    app = apps.get(request.param)
    reset(app.fake)
    return app


@pytest.fixture
def lite(apps: Apps) -> RunningApp:
    app = apps.get("sqlite")
    reset(app.fake)
    return app


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """Parley's log lines, as the key=value text formatter writes them."""
    from webapp.observability import KeyValueFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("webapp")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def chat(
    app: RunningApp,
    message: Any,
    model: Any = "",
    parameters: Any = "{}",
    conversation_id: Any = "",
) -> tuple[str, str]:
    """/chat through gradio_client, bounded in time."""
    job = client(app, USER).submit(message, conversation_id, model, parameters, api_name="/chat")
    answer, new_id = job.result(timeout=LIMIT_S)
    return str(answer), str(new_id)


def refused(
    app: RunningApp,
    message: Any,
    model: Any = "",
    parameters: Any = "{}",
    conversation_id: Any = "",
) -> str:
    """The error /chat answered with; it must refuse, and change and send nothing."""
    before = everything(app)
    with pytest.raises(AppError) as error:
        chat(app, message, model, parameters, conversation_id)
    assert everything(app) == before, "a refused input changed what is stored"
    assert chat_requests(app) == [], "a refused input reached the upstream"
    return str(error.value)


def plain(error: str) -> None:
    """No Python internals in a message meant for a person."""
    for leak in (
        "Traceback",
        "NoneType",
        "Exceeds the limit",
        "int_max_str_digits",
        "object has no attribute",
    ):
        assert leak not in error, error


# ==== model ids ==================================================================================


def test_a_five_million_character_model_id_is_refused_before_anything_is_stored_or_sent(
    any_db: RunningApp, log_text: io.StringIO
) -> None:
    began = time.monotonic()
    error = refused(any_db, "Hello", model="m" * 5_000_000)
    assert error.startswith(
        "The model id is 5,000,000 characters; the limit is 200. Use the id "
        "the provider lists, such as Qwen/Qwen3-32B."
    ), error
    assert time.monotonic() - began < 20, "refusing took as long as accepting did (14.8 s)"
    assert "mmmmmmmmmm" not in log_text.getvalue(), "the model id was logged"
    still_answers(any_db)


def test_a_model_id_with_a_line_break_cannot_forge_a_log_line(
    lite: RunningApp, log_text: io.StringIO
) -> None:
    forged = f"{MODEL}\n2030-01-01 00:00:00,000 INFO webapp.app.auth: admin signed in user=root"
    error = refused(lite, "Hello", model=forged)
    assert error.startswith(
        "The model id contains a control character (U+000A at position "
        "15); it must be one line of printable text."
    ), error
    chat(lite, "Hello", model=MODEL)
    lines = log_text.getvalue().splitlines()
    assert not [line for line in lines if line.startswith("2030-01-01")], lines
    assert [line for line in lines if " turn complete " in line and f"model={MODEL} " in line]


def test_log_lines_escape_control_characters_in_every_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The production formatters themselves: a value with CR, LF, U+2028 or ESC stays on its
    line (text), or inside its JSON string (ENV=production)."""
    record = TurnRecord(
        user="eve\r\n2030-01-01 00:00:00,000 INFO webapp.app.auth: root signed in",
        provider="siliconflow",
        model="Qwen\u2028FORGED status=complete \x1b[2J",
        status="complete",
        http_status=None,
        error_kind=None,
        prompt_tokens=1,
        completion_tokens=2,
        reasoning_tokens=0,
        ttft_s=None,
        duration_s=0.5,
        tool_calls=0,
        conversation_id="c" * 32,
    )
    logger = logging.getLogger("webapp.app.chat")
    try:
        for json_format in (False, True):
            configure_logging("INFO", json_format=json_format)
            log_turn(logger, record)
            logging.getLogger("webapp.app.auth").warning("sign-in refused for %s", "x\ny\u2029z")
            lines = capsys.readouterr().err.split("\n")[:-1]
            assert len(lines) == 2, lines
            if json_format:
                entries = [json.loads(line) for line in lines]
                assert (entries[0]["user"], entries[0]["model"]) == (record.user, record.model)
                assert "\u2028" not in lines[0] and "\u2029" not in lines[1]
            else:
                assert re.match(
                    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO webapp\.app\.chat: turn "
                    r"complete user=\"eve\\r\\n2030",
                    lines[0],
                ), lines[0]
                assert (
                    'model="Qwen\\u2028FORGED status=complete \\x1b[2J" status=complete '
                    in lines[0]
                ), lines[0]
                assert lines[1].endswith("sign-in refused for x\\ny\\u2029z"), lines[1]
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
            root.removeHandler(handler)


# ==== max_tokens =================================================================================


def test_max_tokens_of_ten_to_the_twelve_is_refused_naming_the_ceiling(lite: RunningApp) -> None:
    error = refused(lite, "Hello", parameters='{"max_tokens": 1000000000000}')
    assert error == "Invalid parameters: Max tokens must be between 1 and 131072 (got 1e+12)"
    chat(lite, "Hello", parameters='{"max_tokens": 131072}')
    assert chat_requests(lite)[-1]["json"]["max_tokens"] == 131072


def test_max_tokens_above_a_models_limit_is_refused_naming_that_limit(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    rules = tmp_path / "capabilities.json"
    rules.write_text(json.dumps([{"match": "Qwen3-8B$", "max_output_tokens": 8192}]))
    app = start_app(fake_openai, tmp_path / "parley.db", CAPABILITIES_FILE=str(rules))
    try:
        gradio = app.client()
        with pytest.raises(
            AppError,
            match=re.escape(
                "Max tokens must be at most 8192 for this model (its output limit, "
                "max_output_tokens in CAPABILITIES_FILE; got 8193)"
            ),
        ):
            gradio.predict("Hi", "", "Qwen/Qwen3-8B", '{"max_tokens": 8193}', api_name="/chat")
        assert not [r for r in fake_openai.requests if r["path"].endswith("/completions")]
        gradio.predict("Hi", "", "Qwen/Qwen3-8B", '{"max_tokens": 8192}', api_name="/chat")
        gradio.predict("Hi", "", "Qwen/Qwen3-32B", '{"max_tokens": 8193}', api_name="/chat")
        sent = [
            r["json"]["max_tokens"]
            for r in fake_openai.requests
            if r["path"].endswith("/completions")
        ]
        assert sent == [8192, 8193]
    finally:
        app.close()


# ==== /chat inputs of the wrong type =============================================================

WRONG_TYPES = {
    "message-null": ((None, "", "{}"), "message must be text (a string), not null"),
    "message-number": ((5, "", "{}"), "message must be text (a string), not a number"),
    "message-object": (
        ({"text": "hi"}, "", "{}"),
        "message must be text (a string), not an object",
    ),
    "message-list": ((["hi"], "", "{}"), "message must be text (a string), not a list"),
    "message-boolean": ((True, "", "{}"), "message must be text (a string), not a boolean"),
    "model-null": (
        ("Hi", None, "{}"),
        'model must be text (a string), not null: send "" for the default model',
    ),
    "parameters-number": (
        ("Hi", "", 7),
        'parameters_json must be text (a string), not a number: send "{}" for none',
    ),
    "provider-object": (
        ("Hi", "", '{"provider": {"name": "x"}}'),
        '"provider" must be a provider name (a string), not an object',
    ),
}


@pytest.mark.parametrize("case", WRONG_TYPES, ids=list(WRONG_TYPES))
def test_chat_inputs_of_the_wrong_type_are_refused_with_a_plain_message(
    lite: RunningApp, case: str
) -> None:
    (message, model, parameters), expected = WRONG_TYPES[case]
    error = refused(lite, message, model=model, parameters=parameters)
    assert error == expected
    plain(error)
    still_answers(lite)


def test_a_null_conversation_id_is_refused_with_a_plain_message(lite: RunningApp) -> None:
    error = refused(lite, "Hi", conversation_id=None)
    assert error == (
        'conversation_id must be text (a string), not null: send "" to start a new conversation'
    )


def test_a_five_thousand_digit_seed_is_refused_naming_the_range(any_db: RunningApp) -> None:
    for parameters in (
        '{"seed": ' + "7" * 5000 + "}",
        '{"seed": -' + "7" * 5000 + "}",
        '{"seed": "' + "7" * 5000 + '"}',
        '{"seed": ' + "7" * 400 + "}",
    ):
        error = refused(any_db, "Hi", parameters=parameters)
        digits = "5,000" if "7" * 5000 in parameters else "400"
        assert error == (
            "Invalid parameters: Seed must be between -9223372036854775808 and "
            f"9223372036854775807 (a 64-bit integer; got a {digits}-digit number)"
        )
        plain(error)
    still_answers(any_db)


def test_a_long_value_is_not_echoed_back_in_a_refusal(lite: RunningApp) -> None:
    for parameters in (
        '{"temperature": "' + "x" * 50_000 + '"}',
        '{"' + "k" * 50_000 + '": 1}',
        '{"max_tokens": "' + "9" * 20 + "x" * 40_000 + '"}',
    ):
        error = refused(lite, "Hi", parameters=parameters)
        assert len(error) < 500, error[:500]
    error = refused(lite, "Hi", conversation_id="z" * 100_000)
    assert error.startswith("conversation_id 'zzzz") and len(error) < 300, error[:300]


# ==== imports ====================================================================================


def _import_of(**fields: Any) -> dict[str, Any]:
    question = {
        "id": "q",
        "parent_id": None,
        "role": "user",
        "content": "Hi",
        "created_at": "2024-05-01T10:00:00Z",
    }
    answer = {
        "id": "a",
        "parent_id": "q",
        "role": "assistant",
        "content": "Hello",
        "model": MODEL,
        "provider": "siliconflow",
        "created_at": "2024-05-01T10:00:01Z",
    }
    conversation_fields = {k: v for k, v in fields.items() if k.startswith("conversation.")}
    for key, value in fields.items():
        if key.startswith(("question.", "answer.")):
            (question if key.startswith("question.") else answer)[key.split(".", 1)[1]] = value
    document = _document([question, answer], leaf="a")
    for key, value in conversation_fields.items():
        document["conversation"][key.split(".", 1)[1]] = value
    return document


IMPORT_LIMITS = {
    "message-9M": (
        {"question.content": "x" * 9_000_000},
        'message 1 (id "q"): "content" is 9,000,000 characters; the limit is 100,000 '
        "(MAX_MESSAGE_CHARS).",
    ),
    "system-prompt": (
        {"conversation.system_prompt": "s" * 100_001},
        'conversation: "system_prompt" is 100,001 characters; the limit is 100,000 '
        "(MAX_MESSAGE_CHARS).",
    ),
    "model-5000": (
        {"answer.model": "m" * 5000},
        'message 2 (id "a"): "model" is 5,000 characters; the limit is 200.',
    ),
    "model-newline": (
        {"conversation.model": f"{MODEL}\nforged"},
        'conversation: "model" contains a control character (U+000A at position '
        "15); it must be one line of printable text.",
    ),
    "provider": (
        {"answer.provider": "p" * 65},
        'message 2 (id "a"): "provider" is 65 characters; the limit is 64.',
    ),
    "tool-call-id": (
        {
            "answer.tool_calls": [
                {
                    "id": "c" * 257,
                    "type": "function",
                    "function": {"name": "calculator", "arguments": "{}"},
                }
            ]
        },
        'message 2 (id "a"): tool call 1 "id" is 257 characters; the limit is 256.',
    ),
    "usage": (
        {"answer.usage": {"prompt_tokens": 1, "padding": "p" * 70_000}},
        'message 2 (id "a"): "usage" is 70,',
    ),
}


@pytest.mark.parametrize("case", IMPORT_LIMITS, ids=list(IMPORT_LIMITS))
def test_an_import_over_a_field_limit_is_refused_and_nothing_stored(
    any_db: RunningApp, case: str
) -> None:
    fields, expected = IMPORT_LIMITS[case]
    before = everything(any_db)
    result = import_file(any_db, "limits.json", json.dumps(_import_of(**fields)).encode())
    assert result["success"] is False and expected in str(result["error"]), str(result)[:500]
    assert everything(any_db) == before
    assert chat_requests(any_db) == []


def test_an_import_at_the_message_limit_is_stored_whole(any_db: RunningApp) -> None:
    text_at_limit = "y" * any_db.settings.max_message_chars
    before = {c["id"] for c in everything(any_db)["Conversation"]}
    raw = json.dumps(
        _import_of(
            **{"question.content": text_at_limit, "conversation.system_prompt": text_at_limit}
        )
    ).encode()
    result = import_file(any_db, "at-limit.json", raw)
    assert result["success"], str(result)[:500]
    (new_id,) = {c["id"] for c in everything(any_db)["Conversation"]} - before
    question, _ = path_of(any_db, new_id)
    assert question.content == text_at_limit
    assert conversation(any_db, new_id).system_prompt == text_at_limit


# ==== presets and titles, from the page ==========================================================


def test_a_preset_over_a_field_limit_is_refused_and_nothing_stored(any_db: RunningApp) -> None:
    cases = {
        "model": (
            {"model": "m" * 5_000_000},
            "The model id is 5,000,000 characters; the limit is 200.",
        ),
        "system": (
            {"system-prompt": "s" * 100_001},
            "The system prompt is 100,001 characters; the limit is 100,000 (MAX_MESSAGE_CHARS).",
        ),
    }
    for changes, expected in cases.values():
        before = _sync(_presets(any_db))
        result = run_event(any_db, "preset-name", "submit", {"preset-name": "Big", **changes})
        assert result["success"] is False and expected in str(result["error"]), str(result)[:400]
        assert _sync(_presets(any_db)) == before


async def _presets(app: RunningApp) -> list[tuple[str, str, str]]:
    chat_ui, _ = handlers(app)
    rows = await chat_ui.service.db(lambda s: store.list_presets(session=s, user_id=_user(app)))
    return [(row.name, row.model[:20], row.system_prompt[:20]) for row in rows]


def _user(app: RunningApp) -> int:
    chat_ui, _ = handlers(app)
    return int(_sync(chat_ui.identity.person(gr.Request(username=USER))).user_id)


def test_a_long_title_is_refused_and_the_title_kept(any_db: RunningApp) -> None:
    _, conversation_id = chat(any_db, "Name me")
    title = conversation(any_db, conversation_id).title
    chat_ui, _ = handlers(any_db)
    state = tab(USER, conversation_id, any_db)
    with pytest.raises(gr.Error) as error:
        _sync(chat_ui.rename("t" * 5000, state, "", gr.Request(username=USER)))
    assert error.value.message == "The title is 5,000 characters; the limit is 200. Shorten it."
    assert conversation(any_db, conversation_id).title == title
    _sync(chat_ui.rename("t" * 200, state, "", gr.Request(username=USER)))
    assert conversation(any_db, conversation_id).title == "t" * 200


# ==== the repository's last guard (SQLite and PostgreSQL) ========================================


def test_the_repository_refuses_oversized_fields_whatever_path_writes_them(
    call: Call, alice: int
) -> None:
    with pytest.raises(FieldTooLong, match="The model id is 5,000 characters; the limit is 200"):
        call(repo.create_conversation, user_id=alice, model="m" * 5000)
    conversation_id = call(repo.create_conversation, user_id=alice, model=MODEL).id
    with pytest.raises(
        FieldTooLong,
        match=r"The provider name contains a control character "
        r"\(U\+000A",
    ):
        call(
            repo.update_conversation_settings,
            user_id=alice,
            conversation_id=conversation_id,
            provider="siliconflow\nforged",
        )
    with pytest.raises(FieldTooLong, match="The conversation's parameters are 70,0"):
        call(
            repo.update_conversation_settings,
            user_id=alice,
            conversation_id=conversation_id,
            parameters={"stop": ["x" * 70_000]},
        )
    with pytest.raises(FieldTooLong, match="The model id is 201 characters"):
        call(
            message_rows.add_message,
            user_id=alice,
            conversation_id=conversation_id,
            parent_id=None,
            role="assistant",
            model="m" * 201,
        )
    with pytest.raises(FieldTooLong, match="The model id is 300 characters"):
        call(
            store.save_preset,
            user_id=alice,
            name="Mine",
            team=False,
            is_admin=False,
            model="m" * 300,
        )
    imported = transfer.ImportedConversation(title="T", model="m" * 300, messages=[])
    with pytest.raises(FieldTooLong, match="The model id is 300 characters"):
        call(transfer.import_conversation, user_id=alice, imported=imported)
    assert call(repo.count_conversations, user_id=alice) == 1
    stored = call(repo.get_conversation, user_id=alice, conversation_id=conversation_id)
    assert (stored.provider, stored.model, stored.parameters) == ("", MODEL, {})
    assert call(repo.load_messages, user_id=alice, conversation_id=conversation_id) == []
    assert call(store.list_presets, user_id=alice) == []


def test_rows_stored_before_the_limits_stay_usable(call: Call, alice: int) -> None:
    """Only what a write changes is checked: an old row with a long model id can still be
    renamed, continued and deleted."""
    conversation_id = call(repo.create_conversation, user_id=alice, model=MODEL).id

    def lengthen(session: Any) -> None:
        session.execute(
            text("UPDATE conversations SET model = :model WHERE id = :id"),
            {"model": "m" * 300, "id": conversation_id},
        )
        session.commit()

    call(lambda session: lengthen(session))
    call(repo.rename_conversation, user_id=alice, conversation_id=conversation_id, title="Old")
    call(
        message_rows.add_message,
        user_id=alice,
        conversation_id=conversation_id,
        parent_id=None,
        role="user",
        content="still works",
    )
    stored = call(repo.get_conversation, user_id=alice, conversation_id=conversation_id)
    assert (stored.title, len(stored.model)) == ("Old", 300)
    call(repo.delete_conversation, user_id=alice, conversation_id=conversation_id)
