"""A corpus of hostile inputs, each sent through the running app (FastAPI + Gradio under
uvicorn on loopback, the fake upstream behind it) the way a hostile client or provider would.

Every case checks (a) a clear message naming the cause, and (b) no damage: nothing stored that
should not be (a snapshot of every conversation, message and share link is compared), the user's
message kept where the design keeps it, nothing sent upstream for a refusal, the next normal
request still answered, and the other user's data untouched.

Corpus item → tests:

1. a 1 MB message: test_a_one_megabyte_message_*, test_a_message_at_the_limit_* (the page:
   tests/test_browser_hostile.py)
2. NUL, ESC, RTL override, lone surrogates, invalid UTF-8, on SQLite and PostgreSQL:
   test_control_characters_*, test_lone_surrogates_*, test_invalid_utf8_*,
   test_model_output_with_nul_*, test_nul_in_a_search_or_a_share_token_*,
   test_an_import_with_control_characters_* (and invalid-utf8 in test_hostile_import_files_*)
3, 4. out-of-range, wrong-type and non-object parameters_json: test_bad_parameters_*
5. malformed SSE from the upstream: test_malformed_upstream_stream_*
6. a tool returning 10 MB: test_a_ten_megabyte_tool_result_*
7. markup in content, reasoning and tool results: tests/test_browser_hostile.py
8. oversized and wrongly typed uploads: test_hostile_uploads_*, test_hostile_import_files_*
9. unknown, malformed and other users' ids: test_hostile_conversation_ids_*,
   test_hostile_share_tokens_*

Two users (alice, bob) come from AUTH_MODE=header (the trusted proxy header from loopback).
The tools `huge_result` and `echo_markup` below are loaded by the app (TOOLS_MODULES names this
module).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from sqlmodel import Session, select

from storage.db import session_factory, unit_of_work
from storage.models import Conversation, Message, ShareLink
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI, Reply
from tests.pg import create_database, drop_database
from tests.test_attachments import with_ihdr_size
from tests.test_export import _document
from tests.test_security_demo import VISION, file_data, png_bytes, small_png
from tests.test_team import handlers, outcome, share_view
from webapp.app.error_text import user_message
from webapp.core import attachments
from webapp.provider.error_info import ErrorInfo, parse_error
from webapp.tools.registry import tool
from webapp.ui.session import SessionState

MODULE = "tests.test_hostile_inputs"
USER, OTHER = "alice", "bob"
LIMIT_S = 60  # no hostile input may take longer than this to be answered or refused


# ---- tools the app loads (TOOLS_MODULES=tests.test_hostile_inputs) --------------------------


@tool
def huge_result(size: int) -> str:
    """Return a text of `size` characters.

    Args:
        size: how many characters to return.
    """
    return ("0123456789" * (size // 10 + 1))[:size]


@tool
def echo_markup(text: str) -> str:
    """Return the text as it is.

    Args:
        text: any text, markup included.
    """
    return text


# ---- a fake upstream that can also send raw SSE lines -----------------------------------------


@dataclass
class RawReply:
    """Send these lines as the SSE body, each followed by a blank line, then end the stream."""

    lines: list[str]


class RawFake(FakeOpenAI):
    """FakeOpenAI plus RawReply: the fake builds its chunks from JSON, raw lines need this."""

    async def _chat(self, reader: Any, writer: Any, body: dict[str, Any]) -> None:
        with self._cond:
            head = self._queue[0] if self._queue else None
            if isinstance(head, RawReply):
                self._queue.popleft()
        if not isinstance(head, RawReply):
            await super()._chat(reader, writer, body)
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        for line in head.lines:
            data = (line + "\n\n").encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def reset(fake: FakeOpenAI) -> None:
    """Forget scripted replies and requests: every test starts from the same fake."""
    with fake._cond:
        fake._queue.clear()
        fake._model_queues.clear()
        fake.requests.clear()
    fake.default = Reply(echo=True)


# ---- fixtures: one app per database for the whole module --------------------------------------


class Apps:
    """Parley on SQLite and on PostgreSQL, each started on first use and kept for the module."""

    def __init__(self, fake: RawFake, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.fake, self.tmp, self.request = fake, tmp, request
        self.running: dict[str, RunningApp] = {}
        self.databases: list[str] = []

    def get(self, kind: str) -> RunningApp:
        if kind not in self.running:
            if kind == "sqlite":
                url = f"sqlite:///{self.tmp / 'hostile.db'}"
            else:
                url = create_database(self.request.getfixturevalue("postgres_url"))
                self.databases.append(url)
            self.running[kind] = start_app(
                self.fake,
                url,
                AUTH_MODE="header",
                TOOLS_MODULES=MODULE,
                SHARE_REQUIRES_LOGIN="false",
            )
        return self.running[kind]

    def close(self) -> None:
        for made in _clients.values():
            made.close()
        _clients.clear()
        for app in self.running.values():
            app.close()
        for url in self.databases:
            drop_database(url)


@pytest.fixture(scope="module")
def fake() -> Iterator[RawFake]:
    with RawFake() as running:
        yield running


@pytest.fixture(scope="module")
def apps(
    fake: RawFake, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Apps]:
    made = Apps(fake, tmp_path_factory.mktemp("hostile"), request)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(apps: Apps, request: pytest.FixtureRequest) -> RunningApp:
    """The app on SQLite and on PostgreSQL: for cases where the database matters."""
    app = apps.get(request.param)
    reset(app.fake)
    return app


@pytest.fixture
def lite(apps: Apps) -> RunningApp:
    """The app on SQLite: for cases refused before any database work, or covered elsewhere."""
    app = apps.get("sqlite")
    reset(app.fake)
    return app


# ---- helpers ------------------------------------------------------------------------------------

_clients: dict[tuple[str, str], Client] = {}


def client(app: RunningApp, user: str = USER) -> Client:
    key = (app.url, user)
    if key not in _clients:
        _clients[key] = app.client(headers={"X-Forwarded-User": user})
    return _clients[key]


def chat(
    app: RunningApp,
    message: str,
    conversation_id: str = "",
    parameters: str = "{}",
    user: str = USER,
) -> tuple[str, str]:
    """/chat through gradio_client, bounded in time (a hang fails the test)."""
    job = client(app, user).submit(message, conversation_id, "", parameters, api_name="/chat")
    answer, new_id = job.result(timeout=LIMIT_S)
    return str(answer), str(new_id)


def refusal(
    app: RunningApp,
    message: str,
    conversation_id: str = "",
    parameters: str = "{}",
    user: str = USER,
) -> str:
    """The error /chat answered with (it must refuse)."""
    with pytest.raises(AppError) as refused:
        chat(app, message, conversation_id, parameters, user)
    return str(refused.value)


def db(app: RunningApp) -> AbstractContextManager[Session]:
    return unit_of_work(session_factory(app.parley.engine))


def everything(app: RunningApp) -> dict[str, list[dict[str, Any]]]:
    """Every conversation, message and share link, of every user."""
    with db(app) as session:
        return {
            model.__name__: sorted(
                (row.model_dump() for row in session.exec(select(model))),
                key=lambda row: str(row.get("id") or row.get("token")),
            )
            for model in (Conversation, Message, ShareLink)
        }


def chat_requests(app: RunningApp) -> list[dict[str, Any]]:
    return [r for r in app.fake.requests if r["path"].endswith("/chat/completions")]


def still_answers(app: RunningApp, user: str = USER) -> None:
    """The server answers the next normal request, end to end."""
    word = secrets.token_hex(4)
    assert chat(app, f"ping {word}", user=user)[0] == f"Echo: ping {word}"


def path_of(app: RunningApp, conversation_id: str) -> list[Message]:
    with db(app) as session:
        rows = session.exec(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.created_at, Message.choice_index)
        ).all()
        return list(rows)


def conversation(app: RunningApp, conversation_id: str) -> Conversation:
    with db(app) as session:
        row = session.get(Conversation, conversation_id)
        assert row is not None
        return row


@pytest.fixture
def quiet(lite: RunningApp) -> Iterator[RunningApp]:
    """`lite`, checked afterwards: nothing stored, nothing sent upstream, still answering."""
    before = everything(lite)
    yield lite
    assert everything(lite) == before, "a refused input changed what is stored"
    assert chat_requests(lite) == [], "a refused input reached the upstream"
    still_answers(lite)


# -- the Gradio queue protocol, spoken by hand (hostile bytes, any event) --


def _config(app: RunningApp, http: httpx.Client) -> dict[str, Any]:
    response = http.get(app.url + "config")
    response.raise_for_status()
    return dict(response.json())


def _dependency(config: dict[str, Any], elem_id: str, trigger: str) -> tuple[dict[str, Any], int]:
    target = next(
        c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id
    )
    dependency = next(
        d
        for d in config["dependencies"]
        if [target, trigger] in [list(t) for t in d["targets"]] and target in d["inputs"]
    )
    return dependency, target


def _await_completion(app: RunningApp, http: httpx.Client, session_hash: str) -> dict[str, Any]:
    toasts: list[str] = []
    deadline = time.monotonic() + LIMIT_S
    with http.stream(
        "GET", app.url + "gradio_api/queue/data", params={"session_hash": session_hash}
    ) as stream:
        for line in stream.iter_lines():
            assert time.monotonic() < deadline, "the event never completed"
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "log":
                toasts.append(str(message.get("log")))
            if message.get("msg") == "process_completed":
                output = message.get("output") or {}
                return {
                    "success": message.get("success"),
                    "error": output.get("error"),
                    "data": output.get("data"),
                    "toasts": toasts,
                }
    raise AssertionError("the event stream ended without a result")


def run_event(
    app: RunningApp, elem_id: str, trigger: str, values: dict[str, Any], user: str = USER
) -> dict[str, Any]:
    """Run the page's event `trigger` of component `elem_id` with these input values (by
    elem_id; others keep their initial value). Returns success, error, outputs and toasts."""
    with httpx.Client(timeout=LIMIT_S, headers={"X-Forwarded-User": user}) as http:
        config = _config(app, http)
        dependency, target = _dependency(config, elem_id, trigger)
        props = {c["id"]: c.get("props", {}) for c in config["components"]}
        data = [
            values.get(props[i].get("elem_id"), props[i].get("value")) for i in dependency["inputs"]
        ]
        session_hash = secrets.token_hex(8)
        body = {
            "data": data,
            "fn_index": dependency["id"],
            "trigger_id": target,
            "session_hash": session_hash,
            "event_data": None,
        }
        # json.dumps escapes every non-ASCII character: lone surrogates can be sent too.
        http.post(
            app.url + "gradio_api/queue/join",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        ).raise_for_status()
        return _await_completion(app, http, session_hash)


def raw_chat(app: RunningApp, data_json: bytes, user: str = USER) -> tuple[int, Any]:
    """POST /chat's queue/join with `data_json` as the raw bytes of its "data" array."""
    with httpx.Client(timeout=LIMIT_S, headers={"X-Forwarded-User": user}) as http:
        config = _config(app, http)
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
        session_hash = secrets.token_hex(8)
        body = (
            b'{"data": '
            + data_json
            + b', "fn_index": '
            + str(fn_index).encode()
            + b', "session_hash": "'
            + session_hash.encode()
            + b'"}'
        )
        joined = http.post(
            app.url + "gradio_api/queue/join",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        if joined.status_code != 200:
            return joined.status_code, joined.json()
        return 200, _await_completion(app, http, session_hash)


def upload(app: RunningApp, name: str, raw: bytes, user: str = USER) -> httpx.Response:
    return httpx.post(
        app.url + "gradio_api/upload",
        files=[("files", (name, raw))],
        headers={"X-Forwarded-User": user},
        timeout=LIMIT_S,
    )


def uploaded(app: RunningApp, name: str, raw: bytes) -> dict[str, Any]:
    """Upload a file as the page does; return how events name it."""
    response = upload(app, name, raw)
    assert response.status_code == 200, response.text
    return file_data(response.json()[0]) | {"orig_name": name}


# ==== 1. a 1 MB message ==========================================================================


def test_a_one_megabyte_message_is_refused_naming_the_limit(quiet: RunningApp) -> None:
    began = time.monotonic()
    error = refusal(quiet, "0123456789" * 100_000)
    assert "The message is 1,000,000 characters; the limit is 100,000 (MAX_MESSAGE_CHARS)" in error
    assert time.monotonic() - began < 20


def test_a_message_at_the_limit_is_stored_and_sent_intact(any_db: RunningApp) -> None:
    limit = any_db.settings.max_message_chars
    text = ("Grüße 你好 😀 \t line\r\n" * limit)[:limit]  # 100,000 code points, not bytes
    answer, conversation_id = chat(any_db, text)
    assert answer == "Echo: " + text
    user, assistant = path_of(any_db, conversation_id)
    assert user.content == text and assistant.content == answer
    assert chat_requests(any_db)[-1]["json"]["messages"][-1]["content"] == text


# ==== 2. control characters, lone surrogates, invalid UTF-8 ======================================
# NUL and unpaired surrogates cannot be stored (PostgreSQL refuses NUL in text; neither database
# nor Gradio's JSON can encode a lone surrogate as UTF-8): they become U+FFFD, on both
# databases alike. Other control characters are kept exactly as sent.

CONTROL_TEXTS = {
    "nul": ("before\x00after", "before\ufffdafter"),
    "escape-sequences": ("\x1b[31mred\x1b[0m \x1b]0;title\x07 bell\x08", None),
    "rtl-override": ("invoice_\u202egnp.exe \u200b\ufeff", None),
    "all-together": ("\x00\x1b[2J\u202e\x7f\x00", "\ufffd\x1b[2J\u202e\x7f\ufffd"),
}


@pytest.mark.parametrize("case", CONTROL_TEXTS, ids=list(CONTROL_TEXTS))
def test_control_characters_are_kept_or_stored_replaced(any_db: RunningApp, case: str) -> None:
    sent, expected = CONTROL_TEXTS[case]
    expected = expected or sent
    answer, conversation_id = chat(any_db, sent)
    assert answer == "Echo: " + expected
    user, assistant = path_of(any_db, conversation_id)
    assert (user.content, assistant.content, assistant.state) == (expected, answer, "complete")
    assert chat_requests(any_db)[-1]["json"]["messages"][-1]["content"] == expected
    assert "\x00" not in conversation(any_db, conversation_id).title
    still_answers(any_db)


def test_lone_surrogates_in_a_raw_request_are_stored_replaced(any_db: RunningApp) -> None:
    """JSON may escape a lone surrogate (\\ud800); the request parses, nothing can encode it."""
    before = {c["id"] for c in everything(any_db)["Conversation"]}
    status, result = raw_chat(
        any_db, b'["lone \\ud800 high, \\udfff low, pair \\ud83d\\ude00", "", "", "{}"]'
    )
    assert status == 200 and result["success"], result
    expected = "lone \ufffd high, \ufffd low, pair \U0001f600"
    answer, conversation_id = result["data"]
    assert answer == "Echo: " + expected
    assert {c["id"] for c in everything(any_db)["Conversation"]} - before == {conversation_id}
    user, assistant = path_of(any_db, conversation_id)
    assert (user.content, assistant.content) == (expected, answer)
    assert chat_requests(any_db)[-1]["json"]["messages"][-1]["content"] == expected
    still_answers(any_db)


def test_invalid_utf8_in_the_request_body_is_refused(quiet: RunningApp) -> None:
    status, body = raw_chat(quiet, b'["bad \xff\xfe bytes \xc3", "", "", "{}"]')
    assert status == 400 and "parsing the body" in json.dumps(body)


def test_model_output_with_nul_and_lone_surrogates_is_stored_replaced(any_db: RunningApp) -> None:
    """The fake escapes both in its JSON (\\u0000, \\ud800), as a real server could."""
    any_db.fake.enqueue(Reply(content="out\x00put \ud800 end", reasoning="thin\x00king \udfff"))
    answer, conversation_id = chat(any_db, "Say something odd")
    assert answer == "out\ufffdput \ufffd end"
    _, assistant = path_of(any_db, conversation_id)
    assert assistant.state == "complete", assistant.error
    assert (assistant.content, assistant.reasoning) == (answer, "thin\ufffdking \ufffd")
    still_answers(any_db)


def test_nul_in_a_search_or_a_share_token_finds_nothing_and_breaks_nothing(
    any_db: RunningApp,
) -> None:
    """Text that only looks something up (the sidebar search, a share link's token) must not
    reach PostgreSQL with a NUL either."""
    _, conversation_id = chat(any_db, "Findable words")
    chat_ui, _ = handlers(any_db)
    request = gr.Request(username=USER)
    for query in ("\x00", "Findable\x00", "\ud800"):
        listing = run_event(any_db, "search", "change", {"search": query})
        assert listing["success"], listing
        direct = _sync(chat_ui.sidebar(SessionState(), query, request))
        assert conversation_id not in json.dumps(direct["choices"])
    with httpx.Client(timeout=LIMIT_S) as http:
        for token in ("\x00", "tok\x00en"):
            title, chatbot = share_view(any_db, token, http)
            assert title.startswith("### This link does not exist or was revoked"), title
            assert "Findable" not in chatbot
    still_answers(any_db)


def tab(user: str, conversation_id: str, app: RunningApp) -> SessionState:
    """A tab of `user` whose state holds `conversation_id` (forged when it is not theirs)."""
    chat_ui, _ = handlers(app)
    state = SessionState()
    _sync(chat_ui.person(state, gr.Request(username=user)))
    state.conversation_id = conversation_id
    return state


def _sync(awaitable: Any) -> Any:
    import asyncio

    async def run() -> Any:
        return await awaitable

    return asyncio.run(run())


def import_file(app: RunningApp, name: str, raw: bytes) -> dict[str, Any]:
    """Upload a file and run the sidebar's Import event with it."""
    response = upload(app, name, raw)
    if response.status_code != 200:
        return {"success": False, "error": response.text, "upload_status": response.status_code}
    return run_event(
        app, "import", "upload", {"import": file_data(response.json()[0]) | {"orig_name": name}}
    )


def test_an_import_with_control_characters_is_stored_replaced(any_db: RunningApp) -> None:
    document = _document(
        [
            {
                "id": "q",
                "parent_id": None,
                "role": "user",
                "created_at": "2024-05-01T10:00:00Z",
                "content": "nul\u0000 esc\u001b[1m rtl\u202e lone\ud800",
            },
            {
                "id": "a",
                "parent_id": "q",
                "role": "assistant",
                "created_at": "2024-05-01T10:00:01Z",
                "content": "fine",
                "reasoning": "r\u0000",
            },
        ],
        leaf="a",
    )
    document["conversation"]["title"] = "Imported\u0000 \udfff title"
    raw = json.dumps(document).encode()  # ASCII: every odd character is a \u escape
    before = {c["id"] for c in everything(any_db)["Conversation"]}
    result = import_file(any_db, "odd.json", raw)
    assert result["success"], result
    (new_id,) = {c["id"] for c in everything(any_db)["Conversation"]} - before
    question, answer = path_of(any_db, new_id)
    assert question.content == "nul\ufffd esc\x1b[1m rtl\u202e lone\ufffd"
    assert answer.reasoning == "r\ufffd"
    assert conversation(any_db, new_id).title.startswith("Imported\ufffd \ufffd title")
    still_answers(any_db)


# ==== 3, 4. parameters_json ======================================================================


def nested(depth: int, inner: str = "1") -> str:
    return '{"a": ' * depth + inner + "}" * depth


BAD_PARAMETERS = {
    "temperature-5": ('{"temperature": 5}', "Temperature must be between 0 and 2 (got 5)"),
    "top_p-negative": ('{"top_p": -1}', "Top-p must be more than 0 and at most 1 (got -1)"),
    "max_tokens-lots": ('{"max_tokens": "lots"}', "Max tokens must be a whole number, got 'lots'"),
    "n-0": ('{"n": 0}', "Choices (n) must be between 1 and 8 (got 0)"),
    "n-true": ('{"n": true}', "Choices (n) must be a number, not bool"),
    "stop-number": ('{"stop": 5}', "Stop sequences must be text"),
    "stop-five": ('{"stop": ["a", "b", "c", "d", "e"]}', "At most 4 stop sequences"),
    "seed-1e30": (
        '{"seed": 1e30}',
        "Seed must be between -9223372036854775808 and 9223372036854775807",
    ),
    "seed-huge-int": ('{"seed": ' + "9" * 40 + "}", "Seed must be between"),
    "temperature-NaN": ('{"temperature": NaN}', "Temperature must be a number, got nan"),
    "unknown-name": ('{"temprature": 0.5}', "Unknown parameter 'temprature'; known: temperature"),
    "response_format-garbage": (
        '{"response_format": "garbage"}',
        "Response format must be text, json_object, or a JSON schema",
    ),
    "response_format-type": (
        '{"response_format": {"type": "yaml"}}',
        'A JSON schema response format needs "name" and an object "schema"',
    ),
    "response_format-number": ('{"response_format": 7}', "Response format must be text"),
    "logit_bias-nested": (
        '{"logit_bias": {"42": ' + nested(3) + "}}",
        "Logit bias must map token ids to numbers between -100 and 100, e.g. "
        '{"1234": -100} (got "42": {"a": {"a": {"a": 1}}})',
    ),
    "logit_bias-out-of-range": (
        '{"logit_bias": {"42": 1000}}',
        "Logit bias must map token ids to numbers between -100 and 100",
    ),
    "logit_bias-not-a-token": ('{"logit_bias": {"<script>": 1}}', '(got "<script>": 1)'),
    "logit_bias-100-deep": (
        '{"logit_bias": ' + nested(100) + "}",
        'parameters_json nests more than 64 levels deep; no parameter needs that (in "logit_bias")',
    ),
    "schema-200-deep": (
        '{"response_format": {"name": "x", "schema": ' + nested(200) + "}}",
        'nests more than 64 levels deep; no parameter needs that (in "response_format")',
    ),
    "unknown-900-deep": ('{"x": ' + nested(900) + "}", '(in "x")'),
    "object-1000-deep": (
        '{"temperature": ' + nested(1000) + "}",
        "parameters_json nests more than 64 levels deep",
    ),
    "array-1000-deep": ("[" * 1000 + "]" * 1000, "parameters_json nests more than 64 levels"),
    "tools-string": ('{"tools": "calculator"}', '"tools" must be a list of tool names'),
    "tool_choice-number": ('{"tool_choice": 3}', '"tool_choice" must be "auto"'),
    "provider-unknown": ('{"provider": "evil"}', "Unknown provider 'evil'; configured providers"),
    # 4. not an object at all
    "empty-array": ("[]", 'parameters_json must be a JSON object, e.g. {"temperature": 0.5}'),
    "string": ('"x"', "parameters_json must be a JSON object"),
    "number": ("1", "parameters_json must be a JSON object"),
    "null": ("null", "parameters_json must be a JSON object"),
    "invalid-json": (
        "{temperature: 1}",
        "parameters_json is not valid JSON: Expecting property "
        "name enclosed in double quotes at column 2",
    ),
    "truncated-json": ('{"temperature": ', "parameters_json is not valid JSON: Expecting value"),
    "100-KB": (
        '{"stop": ["' + "x" * 100_000 + '"]}',
        "parameters_json is larger than 64,000 characters",
    ),
}


@pytest.mark.parametrize("case", BAD_PARAMETERS, ids=list(BAD_PARAMETERS))
def test_bad_parameters_are_refused_naming_the_parameter(quiet: RunningApp, case: str) -> None:
    parameters, expected = BAD_PARAMETERS[case]
    error = refusal(quiet, "Hello", parameters=parameters)
    assert expected in error, error
    assert "Traceback" not in error and "recursion" not in error.lower()


PAGE_PARAMETERS = {  # what the page's parameter text boxes could be made to send
    "param-seed": ("9" * 30, "Seed must be between -9223372036854775808 and"),
    "param-response_format": (
        "[" * 5000 + "]" * 5000,
        "Response format nests more than 64 levels deep",
    ),
    "param-logit_bias": ('{"1": {"2": 3}}', "Logit bias must map token ids to numbers"),
    "param-temperature": ("5", "Temperature must be between 0 and 2 (got 5)"),
}


@pytest.mark.parametrize("control", PAGE_PARAMETERS, ids=list(PAGE_PARAMETERS))
def test_bad_parameters_from_the_page_are_refused_and_the_message_kept(
    quiet: RunningApp, control: str
) -> None:
    value, expected = PAGE_PARAMETERS[control]
    result = run_event(
        quiet, "message", "submit", {"message": {"text": "Hello", "files": []}, control: value}
    )
    assert result["success"] and any(expected in toast for toast in result["toasts"]), result
    assert result["data"][1] == {"__type__": "update"}, "the box must keep the message"


def test_bad_parameters_leave_an_existing_conversation_unchanged(lite: RunningApp) -> None:
    _, conversation_id = chat(lite, "Keep my settings", parameters='{"temperature": 0.3}')
    before, sent = everything(lite), len(chat_requests(lite))
    for parameters, expected in (
        BAD_PARAMETERS["seed-1e30"],
        BAD_PARAMETERS["object-1000-deep"],
        BAD_PARAMETERS["temperature-5"],
    ):
        assert expected in refusal(lite, "Again", conversation_id, parameters)
    assert everything(lite) == before and len(chat_requests(lite)) == sent
    assert conversation(lite, conversation_id).parameters["temperature"] == 0.3


# ==== 5. malformed SSE from the upstream =========================================================


def chunk(content: Any = None, **extra: Any) -> str:
    body = {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    return "data: " + json.dumps(body | extra)


FINISH = "data: " + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
KEPT = [chunk("Kept "), chunk("answer.")]
MID_ERROR = 'data: {"error": {"message": "upstream exploded", "type": "server_error"}}'
BROKE = "SiliconFlow reported an error in the middle of the answer"
UNREADABLE = "SiliconFlow sent a response Parley could not read"

# (the raw lines or a Reply, the answer's text, the stored state, the error shown)
SSE_CASES: dict[str, tuple[Any, str, str, str]] = {
    "malformed_lines=3": (
        Reply(content="Kept answer.", malformed_lines=3),
        "Kept answer.",
        "complete",
        "",
    ),
    "garbage-line": (
        [KEPT[0], "this is not SSE \x07 at all", KEPT[1], FINISH, "data: [DONE]"],
        "Kept answer.",
        "complete",
        "",
    ),
    "non-json-data": (
        [KEPT[0], "data: <html>502 Bad Gateway</html>", KEPT[1], FINISH, "data: [DONE]"],
        "Kept answer.",
        "complete",
        "",
    ),
    "choices-null": (
        [KEPT[0], 'data: {"choices": null}', KEPT[1], FINISH, "data: [DONE]"],
        "Kept answer.",
        "complete",
        "",
    ),
    "delta-null-and-numbers": (
        [
            KEPT[0],
            'data: {"choices": [{"index": 0, "delta": null}]}',
            chunk(12345),
            'data: {"choices": "zzz"}',
            KEPT[1],
            FINISH,
            "data: [DONE]",
        ],
        "Kept answer.",
        "complete",
        "",
    ),
    "json-array": (
        [KEPT[0], "data: [1, 2, 3]", KEPT[1]],
        "Kept ",
        "error",
        f"{BROKE}. The provider said: “[1, 2, 3]”. The partial answer above is kept",
    ),
    "error-mid-stream": (
        [*KEPT, MID_ERROR],
        "Kept answer.",
        "error",
        f"{BROKE}. The provider said: “upstream exploded”. The partial answer",
    ),
    "error-after-malformed": (
        Reply(
            content="Kept answer.",
            chunk_chars=5,
            malformed_lines=2,
            error_after=3,
            error_message="overloaded mid-way",
        ),
        "Kept answe",
        "error",
        "The provider said: “overloaded mid-way”",
    ),
    "nothing-but-garbage": (["hello", "world"], "", "error", UNREADABLE),
    "nothing-but-non-json": (["data: nope", "data: {half"], "", "error", UNREADABLE),
    "ends-without-done": (
        KEPT,
        "Kept answer.",
        "error",
        "The connection to SiliconFlow broke while the answer was streaming",
    ),
}


@pytest.mark.parametrize("case", SSE_CASES, ids=list(SSE_CASES))
def test_malformed_upstream_stream_keeps_what_arrived(lite: RunningApp, case: str) -> None:
    script, text, state, error = SSE_CASES[case]
    lite.fake.enqueue(script if isinstance(script, Reply) else RawReply(script))
    answer, conversation_id = chat(lite, "Question")
    _, assistant = path_of(lite, conversation_id)
    assert (assistant.content, assistant.state) == (text, state), assistant.error
    if error:
        assert isinstance(parse_error(assistant.error), ErrorInfo)  # stored as data
        shown = user_message(assistant.error)
        assert error in shown
        assert answer == (f"{text}\n\n" if text else "") + f"[error] {shown}"
    else:
        assert answer == text and assistant.error is None
    still_answers(lite)


# ==== 6. a tool returning 10 MB ==================================================================


def test_a_ten_megabyte_tool_result_is_cut_to_the_bound(any_db: RunningApp) -> None:
    size, bound = 10_000_000, any_db.settings.tool_max_result_chars
    call = {"id": "big1", "name": "huge_result", "arguments": json.dumps({"size": size})}
    any_db.fake.enqueue(Reply(content="", tool_calls=[call]), Reply(content="Summarised."))
    answer, conversation_id = chat(any_db, "Fetch it all", parameters='{"tools": ["huge_result"]}')
    assert answer == "Summarised."
    note = (
        f"[Truncated: the result was {size:,} characters; only the first {bound:,} are included.]"
    )
    sent = [m for m in chat_requests(any_db)[-1]["json"]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in sent] == ["big1"]
    assert sent[0]["content"].endswith(note) and len(sent[0]["content"]) < bound + 200
    rows = path_of(any_db, conversation_id)
    assert [(m.role, m.state) for m in rows] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("tool", "complete"),
        ("assistant", "complete"),
    ]
    assert rows[2].content == sent[0]["content"] and rows[2].tool_status == "done"
    stored = sum(len(json.dumps(m.model_dump(mode="json"))) for m in rows)
    assert stored < bound + 10_000, f"{stored:,} characters stored for one turn"
    still_answers(any_db)


# ==== 8. oversized and wrongly typed uploads =====================================================

EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(500)
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
    b"<script>window.__pwned=1</script></svg>"
)
BOMB = with_ihdr_size(small_png(), 60_000, 60_000)  # a tiny file claiming 3.6 gigapixels

# (file name, bytes, the refusal)
BOX_UPLOADS = {
    "over-ATTACH_MAX_MB": (
        "big.png",
        png_bytes(8, 8) + bytes(6 * 1024 * 1024),
        "Attachment refused: big.png is 6.0 MB; images may be at most 5.0 MB (ATTACH_MAX_MB)",
    ),
    "over-MAX_UPLOAD_MB": (
        "huge.png",
        bytes(11 * 1024 * 1024),
        "File size exceeded maximum allowed size of 10485760 bytes",
    ),
    "exe-renamed-png": (
        "photo.png",
        EXE,
        "Attachment refused: photo.png is not an image Parley "
        "can read: attach a PNG, JPEG, GIF or WebP file.",
    ),
    "exe": ("setup.exe", EXE, "Invalid file type"),
    "svg-with-script": (
        "logo.svg",
        SVG,
        "Attachment refused: logo.svg is not an image Parley can read",
    ),
    "svg-renamed-png": ("logo.png", SVG, "Attachment refused: logo.png is not an image"),
    "zero-bytes": ("empty.png", b"", "Attachment refused: empty.png is not an image"),
    "huge-dimensions": (
        "bomb.png",
        BOMB,
        "Attachment refused: bomb.png has far too many pixels; at most 50,000,000 are accepted",
    ),
}


@pytest.mark.parametrize("case", BOX_UPLOADS, ids=list(BOX_UPLOADS))
def test_hostile_uploads_through_the_message_box_are_refused(quiet: RunningApp, case: str) -> None:
    name, raw, expected = BOX_UPLOADS[case]
    response = upload(quiet, name, raw)
    if response.status_code != 200:
        assert response.status_code == 413 and expected in response.text
        return
    box = {
        "text": "What is in this file?",
        "files": [file_data(response.json()[0]) | {"orig_name": name}],
    }
    result = run_event(quiet, "message", "submit", {"message": box, "model": VISION})
    said = " ".join([str(result["error"] or ""), *result["toasts"]])
    assert expected in said, result
    if result["success"]:  # refused by Parley: the box (the 2nd output) is left as it was
        assert result["data"][1] == {"__type__": "update"}, result["data"]


def attachment_with(raw: bytes) -> dict[str, Any]:
    image = attachments.image_from_bytes(small_png(), "dot.png", attachments.Limits())
    return image | {"data": base64.b64encode(raw).decode()}


def export_with(attached: dict[str, Any]) -> bytes:
    return json.dumps(
        _document(
            [
                {
                    "id": "m1",
                    "parent_id": None,
                    "role": "user",
                    "content": "see this",
                    "attachments": [attached],
                    "created_at": "2024-05-01T10:00:01Z",
                }
            ],
            leaf="m1",
        )
    ).encode()


IMPORTS = {
    "over-MAX_UPLOAD_MB": (
        "export.json",
        b'{"x": "' + b"x" * (11 * 1024 * 1024) + b'"}',
        "File size exceeded maximum allowed size of 10485760 bytes",
    ),
    "exe": (
        "setup.exe",
        EXE,
        "Invalid file type. Please upload a file that is one of these formats: ['.json']",
    ),
    "exe-renamed-json": (
        "export.json",
        EXE,
        "The file is not UTF-8 text: byte 0x90 at position 2 is invalid.",
    ),
    "invalid-utf8": (
        "export.json",
        b'{"format": "\xff\xfe"}',
        "The file is not UTF-8 text: byte 0xff at position 12 is invalid.",
    ),
    "svg-renamed-json": (
        "export.json",
        SVG,
        "The file is not valid JSON: Expecting value at line 1, column 1.",
    ),
    "zero-bytes": ("export.json", b"", "The file is not valid JSON: Expecting value"),
    "nested-100000": ("export.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "image-claiming-huge-size": (
        "export.json",
        export_with(attachment_with(BOMB)),
        'message 1 (id "m1"), attachment 1: ',
    ),
    "exe-as-image": (
        "export.json",
        export_with(attachment_with(EXE)),
        'message 1 (id "m1"), attachment 1: ',
    ),
    "svg-as-image": (
        "export.json",
        export_with(attachment_with(SVG)),
        'message 1 (id "m1"), attachment 1: ',
    ),
}


@pytest.mark.parametrize("case", IMPORTS, ids=list(IMPORTS))
def test_hostile_import_files_are_refused(quiet: RunningApp, case: str) -> None:
    name, raw, expected = IMPORTS[case]
    result = import_file(quiet, name, raw)
    assert result["success"] is False and expected in str(result["error"]), result


# ==== 9. unknown, malformed and other users' conversation ids ====================================

MALFORMED_IDS = {
    "path-traversal": "../../etc/passwd",
    "10-KB": "a" * 10_240,
    "sql-quote": "' OR 1=1 --",
    "unicode": "ｃｏｎｖｅｒｓａｔｉｏｎ－①②③",
    "uppercase-hex": "A" * 32,
    "nul": "0" * 31 + "\x00",
}


@pytest.fixture
def bobs(lite: RunningApp) -> Iterator[tuple[RunningApp, str, dict[str, Any]]]:
    """Bob's conversation with a share link, and a snapshot of everything; after the test,
    everything is as it was and nothing went upstream."""
    _, conversation_id = chat(lite, "Bob's secret plan", user=OTHER)
    _, team_ui = handlers(lite)
    _sync(team_ui.share(tab(OTHER, conversation_id, lite), gr.Request(username=OTHER)))
    reset(lite.fake)
    before = everything(lite)
    yield lite, conversation_id, before
    assert everything(lite) == before, "bob's data (or anyone's) changed"
    assert chat_requests(lite) == []
    still_answers(lite, OTHER)


def same_refusal(first: str, second: str, ids: tuple[str, str]) -> None:
    """Two refusals that differ only in the id they name: existence does not leak."""
    assert first.replace(ids[0], "<id>") == second.replace(ids[1], "<id>"), (first, second)


def test_hostile_conversation_ids_through_chat(bobs: tuple[RunningApp, str, Any]) -> None:
    app, bobs_id, _ = bobs
    unknown = secrets.token_hex(16)
    not_found = refusal(app, "Read it", unknown)
    assert "does not exist or is not yours" in not_found
    same_refusal(not_found, refusal(app, "Read it", bobs_id), (unknown, bobs_id))
    for name, bad_id in MALFORMED_IDS.items():
        error = refusal(app, "Read it", bad_id)
        assert "is malformed: use the id returned by an earlier call" in error, name


def test_hostile_conversation_ids_through_the_page(bobs: tuple[RunningApp, str, Any]) -> None:
    """Opening from the sidebar is the one page event that takes an id from the browser; the
    handlers behind share, export, rename and delete take it from the tab's state, which only
    opening sets. Both are tried: the event with a crafted value, the handlers with a forged
    state."""
    app, bobs_id, _ = bobs
    unknown = secrets.token_hex(16)
    opened = {
        cid: run_event(app, "conversations", "input", {"conversations": cid})
        for cid in (unknown, bobs_id, *MALFORMED_IDS.values())
    }
    for result in opened.values():
        assert result["success"] is False and "is not in the list of choices" in result["error"]
    same_refusal(opened[unknown]["error"], opened[bobs_id]["error"], (unknown, bobs_id))

    chat_ui, team_ui = handlers(app)
    alice = gr.Request(username=USER)

    def forged(cid: str) -> SessionState:
        return tab(USER, cid, app)

    attempts = {
        "open": lambda cid: chat_ui.open(cid, SessionState(), alice),
        "share": lambda cid: team_ui.share(forged(cid), alice),
        "revoke": lambda cid: team_ui.revoke(forged(cid), alice),
        "export_json": lambda cid: team_ui.export_json(forged(cid), alice),
        "export_markdown": lambda cid: team_ui.export_markdown(forged(cid), alice),
        "rename": lambda cid: chat_ui.rename("Mine now", forged(cid), "", alice),
        "delete": lambda cid: chat_ui.delete(forged(cid), "", alice),
    }
    for name, attempt in attempts.items():
        results = {
            cid: _sync(outcome(attempt(cid))) for cid in (unknown, bobs_id, *MALFORMED_IDS.values())
        }
        for cid, result in results.items():
            assert result == "gr.Error: That conversation does not exist or is not yours.", (
                name,
                cid[:40],
                result,
            )


SHARE_TOKENS = {
    "empty": "",
    "10-KB": "t" * 10_240,
    "sql-quote": "' OR '1'='1",
    "path-traversal": "../../etc/passwd",
    "unicode": "ｔｏｋｅｎ①",
}


def test_hostile_share_tokens_show_the_same_gone_page(bobs: tuple[RunningApp, str, Any]) -> None:
    app, bobs_id, before = bobs
    link = next(row for row in before["ShareLink"] if row["conversation_id"] == bobs_id)
    with httpx.Client(timeout=LIMIT_S) as http:
        assert "Bob's secret plan" in share_view(app, link["token"], http)[1]
        for name, token in SHARE_TOKENS.items():
            title, chatbot = share_view(app, token, http)
            assert title.startswith("### This link does not exist or was revoked"), name
            assert "secret plan" not in chatbot
        guessed = link["token"][:-1] + ("A" if link["token"][-1] != "A" else "B")
        assert share_view(app, guessed, http)[0] == share_view(app, "x", http)[0]
