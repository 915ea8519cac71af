"""Export and import of conversations: JSON, Markdown, validation, and storage round trips."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from markdown_it import MarkdownIt

from storage import message_rows, transfer, tree
from storage import repository as repo
from storage.models import Conversation, Message
from webapp.app import export, import_file
from webapp.app.import_file import ImportRefused

Call = Callable[..., Any]

SECRET = "sk-live-123"
MODEL = "Qwen/Qwen3-8B"
BACKTICKY = "result with ```` four, ``` three\n```\nand a fence-looking line"
EXPORTED_AT = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _add(
    call: Call, user_id: int, conversation_id: str, parent_id: str | None, role: str, **fields: Any
) -> str:
    return call(
        message_rows.add_message,
        user_id=user_id,
        conversation_id=conversation_id,
        parent_id=parent_id,
        role=role,
        **fields,
    ).id


def _build(call: Call, user_id: int) -> dict[str, str]:
    """A conversation with every feature an export must carry; returns the ids by name."""
    planted = {
        "api_key": SECRET,
        "max_tokens": 256,
        "extra": {"nested": [{"Authorization": f"Bearer {SECRET}"}]},
    }
    conversation_id = call(
        repo.create_conversation,
        user_id=user_id,
        title="Trip plan",
        system_prompt="Be brief.\nUse metric.",
        provider="siliconflow",
        model=MODEL,
        parameters={
            "temperature": 0.5,
            "max_tokens": 256,
            "tools": ["calculator"],
            "tool_choice": "auto",
            "provider_api_key": SECRET,
            "auth": planted,
        },
    ).id
    ids = {"conversation": conversation_id}

    def add(name: str, parent: str | None, role: str, **fields: Any) -> str:
        ids[name] = _add(call, user_id, conversation_id, parent, role, **fields)
        return ids[name]

    answer = {"provider": "siliconflow", "model": MODEL, "parameters": planted}
    add("u1", None, "user", content="What is 2+2?")
    add(
        "a1",
        ids["u1"],
        "assistant",
        content="FIRST-ANSWER-OFF-PATH",
        feedback=-1,
        finish_reason="stop",
        **answer,
    )
    add(
        "a2",
        ids["u1"],
        "assistant",
        content="Four.",
        reasoning="Add two and two.",
        feedback=1,
        usage={
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "reasoning_tokens": 5,
            "total_tokens": 20,
        },
        timings={
            "duration_ms": 900,
            "ttft_ms": 250,
            "tokens_per_s": 40.5,
            "tokens_estimated": False,
            "reasoning_ms": 100,
        },
        finish_reason="stop",
        **answer,
    )
    add("u2", ids["a2"], "user", content="Two haiku, please.")
    batch = uuid.uuid4().hex
    add(
        "b0", ids["u2"], "assistant", content="Haiku one.", choice_index=0, batch_id=batch, **answer
    )
    add(
        "b1",
        ids["u2"],
        "assistant",
        content="SECOND-CHOICE-OFF-PATH",
        choice_index=1,
        batch_id=batch,
        make_current=False,
        **answer,
    )
    add("u3", ids["b0"], "user", content="Compute 6*7 with the tool.")
    add("t0", ids["u3"], "assistant", state="streaming", **answer)
    tool_calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression":"6*7"}'},
        }
    ]
    call(
        message_rows.complete_message,
        user_id=user_id,
        message_id=ids["t0"],
        content="",
        reasoning="Use the calculator.",
        tool_calls=tool_calls,
        finish_reason="tool_calls",
        timings={"duration_ms": 300},
    )
    ids["t1"] = call(
        message_rows.record_tool_round,
        user_id=user_id,
        assistant_id=ids["t0"],
        results=[
            {
                "tool_call_id": "call_1",
                "name": "calculator",
                "content": BACKTICKY,
                "tool_status": "done",
                "timings": {"duration_ms": 5},
            }
        ],
        next_assistant={"provider": "", "model": MODEL, "parameters": planted},
    )
    call(
        message_rows.complete_message,
        user_id=user_id,
        message_id=ids["t1"],
        content="6*7 = 42.",
        usage={"prompt_tokens": 40, "completion_tokens": 6},
        timings={"ttft_ms": 120},
        finish_reason="stop",
    )
    add("u4", ids["t1"], "user", content="Write a long essay.")
    add("s1", ids["u4"], "assistant", content="Once upon a", state="stopped", **answer)
    return ids


def _export(call: Call, user_id: int, conversation_id: str) -> dict[str, Any]:
    conversation, messages = call(
        transfer.export_conversation, user_id=user_id, conversation_id=conversation_id
    )
    return export.conversation_json(conversation, messages, exported_at=EXPORTED_AT)


def _canonical(document: dict[str, Any]) -> dict[str, Any]:
    """An export with ids replaced by positions, batch ids by labels, and import-time fields
    (export time, conversation updated_at, title suffix) removed."""
    position = {m["id"]: index for index, m in enumerate(document["messages"])}
    batches: dict[str, int] = {}
    messages = []
    for message in document["messages"]:
        item = dict(message)
        item["id"] = position[message["id"]]
        item["parent_id"] = position.get(message["parent_id"])
        if message["batch_id"] is not None:
            item["batch_id"] = batches.setdefault(message["batch_id"], len(batches))
        messages.append(item)
    conversation = dict(document["conversation"])
    conversation["current_leaf_id"] = position.get(conversation["current_leaf_id"])
    conversation["title"] = conversation["title"].removesuffix(" (imported)")
    del conversation["updated_at"]
    return {"format": document["format"], "conversation": conversation, "messages": messages}


def _walk_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_keys(item)


# --- JSON export ---------------------------------------------------------------------------


def test_json_export_holds_the_whole_tree_in_creation_order(call: Call, alice: int) -> None:
    ids = _build(call, alice)
    document = _export(call, alice, ids["conversation"])
    assert document["format"] == "parley.conversation.v1"
    assert document["exported_at"] == "2030-01-02T03:04:05.678901Z"
    assert document["conversation"]["title"] == "Trip plan"
    assert document["conversation"]["current_leaf_id"] == ids["s1"]
    exported_ids = [m["id"] for m in document["messages"]]
    names = ["u1", "a1", "a2", "u2", "b0", "b1", "u3", "t0"]
    assert exported_ids[:8] == [ids[name] for name in names]
    assert len(exported_ids) == 12  # + tool result, final answer, u4, stopped answer
    assert set(document["messages"][0]) == {
        "id",
        "parent_id",
        "role",
        "content",
        "reasoning",
        "tool_calls",
        "tool_call_id",
        "name",
        "tool_status",
        "provider",
        "model",
        "parameters",
        "usage",
        "timings",
        "finish_reason",
        "state",
        "error",
        "feedback",
        "preferred",
        "choice_index",
        "batch_id",
        "attachments",
        "created_at",
    }
    by_id = {m["id"]: m for m in document["messages"]}
    assert by_id[ids["a1"]]["parent_id"] == by_id[ids["a2"]]["parent_id"] == ids["u1"]
    assert by_id[ids["b1"]]["batch_id"] == by_id[ids["b0"]]["batch_id"] is not None
    assert by_id[ids["b1"]]["choice_index"] == 1
    assert by_id[ids["a2"]]["feedback"] == 1 and by_id[ids["a1"]]["feedback"] == -1
    assert by_id[ids["a2"]]["usage"]["reasoning_tokens"] == 5
    assert by_id[ids["t0"]]["tool_calls"][0]["function"]["name"] == "calculator"
    tool_row = next(m for m in document["messages"] if m["role"] == "tool")
    assert (tool_row["tool_call_id"], tool_row["tool_status"]) == ("call_1", "done")
    assert tool_row["content"] == BACKTICKY
    assert by_id[ids["s1"]]["state"] == "stopped"
    stamps = [m["created_at"] for m in document["messages"]]
    assert all(stamp.endswith("Z") for stamp in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    _, rows = call(transfer.export_conversation, user_id=alice, conversation_id=ids["conversation"])
    assert datetime.fromisoformat(stamps[0]) == rows[0].created_at


def test_json_export_never_holds_users_or_secrets(call: Call, alice: int) -> None:
    ids = _build(call, alice)
    document = _export(call, alice, ids["conversation"])
    dumped = json.dumps(document)
    assert SECRET not in dumped
    assert "alice" not in dumped
    assert not {"user_id", "username", "api_key", "Authorization"} & set(_walk_keys(document))
    # Counting names that merely contain "token" survive.
    assert document["conversation"]["parameters"]["max_tokens"] == 256
    assert document["messages"][1]["parameters"]["max_tokens"] == 256
    assert document["messages"][1]["parameters"]["extra"] == {"nested": [{}]}
    everything = export.export_all_json(call(transfer.export_all, user_id=alice))
    assert SECRET not in json.dumps(everything)
    assert SECRET not in export.conversation_markdown(
        *call(transfer.export_conversation, user_id=alice, conversation_id=ids["conversation"])
    )


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "API_KEY",
        "apiKey",
        "x-api-key",
        "Authorization",
        "access_token",
        "refreshToken",
        "client_secret",
        "password",
        "db_password",
        "token",
        "keys",
    ],
)
def test_secret_names_are_recognised(name: str) -> None:
    assert export.is_secret_name(name)
    assert export.strip_secrets({name: SECRET, "deep": [{name: SECRET}]}) == {"deep": [{}]}


@pytest.mark.parametrize(
    "name",
    [
        "max_tokens",
        "maxTokens",
        "completion_tokens",
        "temperature",
        "top_k",
        "stop",
        "thinking_budget",
    ],
)
def test_ordinary_parameter_names_are_kept(name: str) -> None:
    assert not export.is_secret_name(name)


def test_export_all_json_wraps_each_conversation(call: Call, alice: int) -> None:
    ids = _build(call, alice)
    second = call(repo.create_conversation, user_id=alice, title="Empty one").id
    document = export.export_all_json(
        call(transfer.export_all, user_id=alice), exported_at=EXPORTED_AT
    )
    assert document["format"] == "parley.export.v1"
    assert document["exported_at"] == "2030-01-02T03:04:05.678901Z"
    titles = [item["conversation"]["title"] for item in document["conversations"]]
    assert titles == ["Empty one", "Trip plan"]  # newest activity first
    assert [len(item["messages"]) for item in document["conversations"]] == [0, 12]
    assert document["conversations"][1] == _export(call, alice, ids["conversation"])
    assert second


# --- Markdown export -----------------------------------------------------------------------


def test_markdown_shows_the_active_path_only(call: Call, alice: int) -> None:
    ids = _build(call, alice)
    markdown = export.conversation_markdown(
        *call(transfer.export_conversation, user_id=alice, conversation_id=ids["conversation"])
    )
    assert markdown.startswith("# Trip plan\n")
    assert f"**Model:** {MODEL}" in markdown and "**Provider:** siliconflow" in markdown
    assert '"temperature": 0.5' not in markdown and "temperature=0.5" in markdown
    assert "> Be brief.\n> Use metric." in markdown
    assert markdown.count("### You") == 4
    assert "FIRST-ANSWER-OFF-PATH" not in markdown
    assert "SECOND-CHOICE-OFF-PATH" not in markdown
    for text_on_path in ("What is 2+2?", "Four.", "Haiku one.", "6*7 = 42.", "Once upon a"):
        assert text_on_path in markdown
    assert markdown.index("What is 2+2?") < markdown.index("Four.") < markdown.index("Haiku one.")
    assert "<details><summary>Thinking</summary>\n\nAdd two and two.\n\n</details>" in markdown
    assert "<details><summary>Thinking</summary>\n\nUse the calculator." in markdown
    assert "#### Tool call: calculator · done" in markdown
    assert "⏹ Stopped" in markdown
    assert "12 prompt · 3 completion tokens · 5 reasoning tokens · first token 0.25 s" in markdown
    assert "40.5 tok/s" in markdown
    # The tool round and its final answer share one heading.
    assert markdown.count(f"### {MODEL}") == 4


def test_markdown_code_fences_hold_arguments_and_a_backtick_heavy_result(
    call: Call, alice: int
) -> None:
    ids = _build(call, alice)
    markdown = export.conversation_markdown(
        *call(transfer.export_conversation, user_id=alice, conversation_id=ids["conversation"])
    )
    fences = [t for t in MarkdownIt("commonmark").parse(markdown) if t.type == "fence"]
    contents = [t.content for t in fences]
    assert '{\n  "expression": "6*7"\n}\n' in contents
    assert BACKTICKY + "\n" in contents
    assert [t.info for t in fences if t.content == BACKTICKY + "\n"] == [""]
    # Nothing after the result leaked into a code block.
    assert all("6*7 = 42." not in content for content in contents)


def test_markdown_marks_errors_and_escapes_the_thinking_block() -> None:
    conversation = Conversation(id="c" * 32, user_id=1, title="  Odd\ntitle ", model="m")
    user = Message(id="1" * 32, conversation_id="c" * 32, user_id=1, role="user", content="hi")
    answer = Message(
        id="2" * 32,
        conversation_id="c" * 32,
        user_id=1,
        role="assistant",
        parent_id=user.id,
        state="error",
        error="Provider said no",
        reasoning="a </details> inside",
        model="",
    )
    markdown = export.conversation_markdown(conversation, [user, answer])
    assert markdown.startswith("# Odd title\n")
    assert "> ⚠ Error: Provider said no" in markdown
    assert "a &lt;/details> inside" in markdown and markdown.count("</details>") == 1
    assert "### m" in markdown  # the conversation's model when the answer names none
    assert "Interrupted" in export.conversation_markdown(
        conversation, [user, _with_state(answer, "interrupted")]
    )


def test_markdown_shows_unrun_calls_and_stray_results() -> None:
    conversation = Conversation(id="c" * 32, user_id=1, title="T")
    calls = [
        {
            "id": "call_9",
            "type": "function",
            "function": {"name": "search", "arguments": "not json {"},
        }
    ]
    rows = [
        Message(id="1" * 32, conversation_id="c" * 32, user_id=1, role="user", content="q"),
        Message(
            id="2" * 32,
            conversation_id="c" * 32,
            user_id=1,
            role="assistant",
            parent_id="1" * 32,
            tool_calls=calls,
            model="m",
        ),
        Message(
            id="3" * 32,
            conversation_id="c" * 32,
            user_id=1,
            role="tool",
            parent_id="2" * 32,
            tool_call_id="other",
            name="lookup",
            content="stray",
            tool_status="error",
            error="boom",
        ),
    ]
    markdown = export.conversation_markdown(conversation, rows)
    assert "#### Tool call: search · not run" in markdown
    assert "```json\nnot json {\n```" in markdown  # unparsable arguments are shown raw
    assert "#### Tool result: lookup\n\n```\nstray\n```" in markdown
    assert "### Assistant" not in markdown and "### m" in markdown


def _with_state(message: Message, state: str) -> Message:
    clone = message.model_copy()
    clone.state = state
    return clone


# --- round trip through storage ------------------------------------------------------------


def test_round_trip_to_another_user_keeps_everything_but_ids(
    call: Call, alice: int, bob: int
) -> None:
    ids = _build(call, alice)
    original = _export(call, alice, ids["conversation"])
    imported = import_file.parse_import(json.dumps(original).encode())
    new_id = call(transfer.import_conversation, user_id=bob, imported=imported)
    assert new_id != ids["conversation"] and re.fullmatch(r"[0-9a-f]{32}", new_id)
    again = _export(call, bob, new_id)
    assert again["conversation"]["title"] == "Trip plan (imported)"
    assert _canonical(again) == _canonical(original)
    assert not {m["id"] for m in again["messages"]} & {m["id"] for m in original["messages"]}
    batch_ids = {m["batch_id"] for m in again["messages"]} - {None}
    assert len(batch_ids) == 1 and not batch_ids & {m["batch_id"] for m in original["messages"]}
    # The active path is the same conversation, message by message.
    conversation, messages = call(transfer.export_conversation, user_id=bob, conversation_id=new_id)
    path = tree.active_path(messages, conversation.current_leaf_id)
    assert [m.content for m in path][-3:] == ["6*7 = 42.", "Write a long essay.", "Once upon a"]
    assert len(path) == 10
    assert all(m.user_id == bob for m in messages)
    # Alice's conversation is untouched and still hers alone.
    assert (
        call(transfer.export_conversation, user_id=alice, conversation_id=ids["conversation"])[
            0
        ].title
        == "Trip plan"
    )
    with pytest.raises(repo.NotFound):
        call(transfer.export_conversation, user_id=alice, conversation_id=new_id)


def test_import_puts_the_conversation_first_and_new_messages_after_it(
    call: Call, alice: int, bob: int
) -> None:
    ids = _build(call, alice)
    older = call(repo.create_conversation, user_id=bob, title="Older").id
    document = _export(call, alice, ids["conversation"])
    document["messages"][-1]["created_at"] = "2990-01-01T00:00:00Z"  # a clock far ahead
    new_id = call(
        transfer.import_conversation,
        user_id=bob,
        imported=import_file.parse_import(json.dumps(document)),
    )
    listed = call(repo.list_conversations, user_id=bob)
    assert [item.id for item in listed] == [new_id, older]
    leaf = document["conversation"]["current_leaf_id"]
    assert leaf == document["messages"][-1]["id"]
    conversation = call(repo.get_conversation, user_id=bob, conversation_id=new_id)
    added = _add(call, bob, new_id, conversation.current_leaf_id, "user", content="Next")
    _, messages = call(transfer.export_conversation, user_id=bob, conversation_id=new_id)
    assert messages[-1].id == added
    assert conversation.created_at == datetime.fromisoformat(document["conversation"]["created_at"])


def test_import_keeps_file_order_for_equal_timestamps_and_marks_streaming(
    call: Call, bob: int
) -> None:
    stamp = "2024-05-01T10:00:00Z"
    document = _document(
        [
            {"id": "q", "role": "user", "content": "first", "created_at": stamp},
            *(
                {
                    "id": f"x{n}",
                    "parent_id": "q",
                    "role": "assistant",
                    "content": f"answer {n}",
                    "created_at": stamp,
                }
                for n in range(6)
            ),
            {
                "id": "live",
                "parent_id": "q",
                "role": "assistant",
                "content": "half",
                "state": "streaming",
                "created_at": stamp,
            },
        ],
        leaf="x0",
    )
    new_id = call(
        transfer.import_conversation,
        user_id=bob,
        imported=import_file.parse_import(json.dumps(document)),
    )
    conversation, messages = call(transfer.export_conversation, user_id=bob, conversation_id=new_id)
    assert [m.content for m in messages] == ["first", *(f"answer {n}" for n in range(6)), "half"]
    assert messages[-1].state == "interrupted"
    assert messages[-1].error == transfer.IMPORTED_STREAMING_ERROR
    assert [m.content for m in tree.active_path(messages, conversation.current_leaf_id)] == [
        "first",
        "answer 0",
    ]
    assert all(re.fullmatch(r"[0-9a-f]{32}", m.id) for m in messages)


def test_import_titles(call: Call, bob: int) -> None:
    def title_of(title: str) -> str:
        document = _document([])
        document["conversation"]["title"] = title
        new_id = call(
            transfer.import_conversation,
            user_id=bob,
            imported=import_file.parse_import(json.dumps(document)),
        )
        return str(call(repo.get_conversation, user_id=bob, conversation_id=new_id).title)

    assert title_of("  Notes\nfrom   May ") == "Notes from May (imported)"
    assert title_of("   ") == "Untitled"
    long_title = title_of("x" * 300)
    assert len(long_title) == repo.TITLE_MAX_LENGTH and long_title.endswith(" (imported)")


def test_import_stores_no_secret_and_no_unstorable_text(call: Call, bob: int) -> None:
    document = _document(
        [
            {
                "id": "q",
                "role": "user",
                "content": "nul\u0000here \ud800 lone",
                "created_at": "2024-05-01T10:00:00Z",
                "parameters": {"temperature": 1, "headers": {"X-Api-Key": SECRET}},
            },
        ]
    )
    document["conversation"]["parameters"] = {
        "temperature": 0.3,
        "api_key": SECRET,
        "future_setting": 1,
    }
    new_id = call(
        transfer.import_conversation,
        user_id=bob,
        imported=import_file.parse_import(json.dumps(document)),
    )
    conversation, messages = call(transfer.export_conversation, user_id=bob, conversation_id=new_id)
    assert conversation.parameters == {"temperature": 0.3, "future_setting": 1}
    assert messages[0].parameters == {"temperature": 1, "headers": {}}
    assert messages[0].content == "nul\ufffdhere \ufffd lone"


# --- isolation -----------------------------------------------------------------------------


def test_users_export_only_their_own(call: Call, alice: int, bob: int) -> None:
    ids = _build(call, alice)
    bobs = call(repo.create_conversation, user_id=bob, title="Bob's").id
    _add(call, bob, bobs, None, "user", content="bob asks")
    with pytest.raises(repo.NotFound):
        call(transfer.export_conversation, user_id=bob, conversation_id=ids["conversation"])
    with pytest.raises(repo.NotFound):
        call(transfer.export_conversation, user_id=bob, conversation_id=uuid.uuid4().hex)
    with pytest.raises(repo.InvalidId):
        call(transfer.export_conversation, user_id=bob, conversation_id="../etc")
    for_bob = call(transfer.export_all, user_id=bob)
    assert [(c.id, [m.content for m in ms]) for c, ms in for_bob] == [(bobs, ["bob asks"])]
    for_alice = call(transfer.export_all, user_id=alice)
    assert [c.id for c, _ in for_alice] == [ids["conversation"]]
    assert len(for_alice[0][1]) == 12
    assert "bob asks" not in json.dumps(export.export_all_json(for_alice))


def test_import_ignores_ids_and_users_from_the_file(call: Call, alice: int, bob: int) -> None:
    ids = _build(call, alice)
    document = _export(call, alice, ids["conversation"])
    document["conversation"]["user_id"] = alice
    document["conversation"]["id"] = ids["conversation"]
    for message in document["messages"]:
        message["user_id"] = alice
        message["conversation_id"] = ids["conversation"]
    new_id = call(
        transfer.import_conversation,
        user_id=bob,
        imported=import_file.parse_import(json.dumps(document)),
    )
    assert new_id != ids["conversation"]
    _, alices = call(
        transfer.export_conversation, user_id=alice, conversation_id=ids["conversation"]
    )
    assert len(alices) == 12
    _, bobs = call(transfer.export_conversation, user_id=bob, conversation_id=new_id)
    assert len(bobs) == 12 and {m.user_id for m in bobs} == {bob}


# --- refusals ------------------------------------------------------------------------------


def _document(messages: list[dict[str, Any]], leaf: str | None = None) -> dict[str, Any]:
    return {
        "format": "parley.conversation.v1",
        "exported_at": "2030-01-01T00:00:00Z",
        "conversation": {
            "title": "T",
            "system_prompt": "",
            "provider": "p",
            "model": "m",
            "parameters": {},
            "created_at": "2024-05-01T09:00:00Z",
            "updated_at": "2024-05-01T11:00:00Z",
            "current_leaf_id": leaf,
        },
        "messages": messages,
    }


def _valid() -> dict[str, Any]:
    """A small valid file: question, answer with a tool call, its result, final answer."""
    stamp = "2024-05-01T10:00:0{}Z"
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    return _document(
        [
            {
                "id": "m1",
                "parent_id": None,
                "role": "user",
                "content": "q",
                "created_at": stamp.format(1),
            },
            {
                "id": "m2",
                "parent_id": "m1",
                "role": "assistant",
                "tool_calls": calls,
                "created_at": stamp.format(2),
            },
            {
                "id": "m3",
                "parent_id": "m2",
                "role": "tool",
                "tool_call_id": "c1",
                "name": "f",
                "tool_status": "done",
                "content": "r",
                "created_at": stamp.format(3),
            },
            {
                "id": "m4",
                "parent_id": "m3",
                "role": "assistant",
                "content": "a",
                "usage": {"prompt_tokens": 1},
                "timings": {"ttft_ms": 5},
                "feedback": 1,
                "created_at": stamp.format(4),
            },
        ],
        leaf="m4",
    )


def test_the_valid_file_is_accepted() -> None:
    imported = import_file.parse_import(json.dumps(_valid()))
    assert [m["id"] for m in imported.messages] == ["m1", "m2", "m3", "m4"]
    assert imported.current_leaf_id == "m4"
    assert imported.messages[0]["created_at"] == datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)
    assert imported.created_at == datetime(2024, 5, 1, 9, tzinfo=UTC)
    assert imported.messages[3]["state"] == "complete"  # the default


def test_import_lists_messages_in_creation_order() -> None:
    document = _valid()
    document["messages"].reverse()
    stamp = document["messages"][0]["created_at"]
    document["messages"].insert(
        0,
        {
            "id": "m5",
            "parent_id": "m3",
            "role": "assistant",
            "choice_index": 1,
            "created_at": stamp,
        },
    )
    imported = import_file.parse_import(json.dumps(document))
    assert [m["id"] for m in imported.messages] == ["m1", "m2", "m3", "m4", "m5"]


def test_a_long_conversation_is_accepted() -> None:
    messages = [
        {
            "id": f"n{i}",
            "parent_id": f"n{i - 1}" if i else None,
            "role": ("user", "assistant")[i % 2],
            "content": str(i),
            "created_at": f"2024-05-01T10:00:00.{i:06d}Z",
        }
        for i in range(3000)
    ]
    imported = import_file.parse_import(json.dumps(_document(messages, leaf="n2999")))
    assert len(imported.messages) == 3000 and imported.messages[-1]["parent_id"] == "n2998"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to the valid file: set (or, with ..., delete) the value at a dotted path."""

    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        key: Any = int(last) if last.isdigit() else last
        if value is ...:
            del node[key]
        else:
            node[key] = value

    return change


def _parent(number: int, parent: str) -> Callable[[dict[str, Any]], None]:
    return _set(f"messages.{number}.parent_id", parent)


REFUSALS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "format missing",
        _set("format", ...),
        'Not a Parley conversation export: "format" is missing.',
    ),
    (
        "unknown format",
        _set("format", "chatgpt.v2"),
        'Unsupported format "chatgpt.v2"; expected "parley.conversation.v1" or "parley.export.v1"',
    ),
    ("no conversation", _set("conversation", ...), '"conversation" is missing'),
    (
        "conversation a list",
        _set("conversation", []),
        '"conversation" must be an object, not a list',
    ),
    ("messages an object", _set("messages", {}), '"messages" must be a list, not an object'),
    (
        "message not an object",
        _set("messages.1", "hi"),
        "message 2 must be an object, not a string",
    ),
    ("id missing", _set("messages.1.id", ...), 'message 2: "id" is missing'),
    ("id empty", _set("messages.1.id", ""), 'message 2: "id" must be a non-empty string'),
    (
        "role wizard",
        _set("messages.2.role", "wizard"),
        'message 3 (id "m3") has role "wizard"; expected user, assistant or tool.',
    ),
    ("role system", _set("messages.0.role", "system"), 'has role "system"'),
    (
        "unknown state",
        _set("messages.3.state", "exploded"),
        'message 4 (id "m4") has state "exploded"; expected complete, streaming, stopped',
    ),
    (
        "content a number",
        _set("messages.0.content", 7),
        'message 1 (id "m1"): "content" must be a string, not a number.',
    ),
    ("content null", _set("messages.0.content", None), '"content" must be a string, not null'),
    ("feedback 5", _set("messages.3.feedback", 5), '"feedback" must be 1, -1 or null'),
    ("feedback true", _set("messages.3.feedback", True), '"feedback" must be 1, -1 or null'),
    (
        "choice index bool",
        _set("messages.3.choice_index", True),
        '"choice_index" must be a whole number from 0 to 999, not a boolean',
    ),
    ("choice index huge", _set("messages.3.choice_index", 2**40), '"choice_index" must be'),
    (
        "parameters a list",
        _set("messages.3.parameters", [1]),
        '"parameters" must be an object or null, not a list',
    ),
    (
        "usage text",
        _set("messages.3.usage.prompt_tokens", "1"),
        'message 4 (id "m4"): "usage.prompt_tokens" must be a number, not a string.',
    ),
    (
        "timings text",
        _set("messages.3.timings.ttft_ms", [5]),
        '"timings.ttft_ms" must be a number, not a list',
    ),
    (
        "tool calls an object",
        _set("messages.1.tool_calls", {}),
        '"tool_calls" must be a list or null, not an object',
    ),
    (
        "tool call without function",
        _set("messages.1.tool_calls.0.function", ...),
        'message 2 (id "m2"): tool call 1 must look like',
    ),
    (
        "tool call arguments object",
        _set("messages.1.tool_calls.0.function.arguments", {}),
        "tool call 1 must look like",
    ),
    (
        "tool calls on a user",
        _set("messages.0.tool_calls", [{"id": "x", "function": {"name": "f", "arguments": ""}}]),
        'message 1 (id "m1") has "tool_calls", but only',
    ),
    (
        "tool result without call id",
        _set("messages.2.tool_call_id", ...),
        'message 3 (id "m3") is a tool result without "tool_call_id".',
    ),
    (
        "tool status too long",
        _set("messages.2.tool_status", "x" * 21),
        '"tool_status" must be a string of at most 20 characters or null',
    ),
    (
        "attachments of strings",
        _set("messages.0.attachments", ["a"]),
        '"attachments" must be a list of objects or null',
    ),
    (
        "created_at missing",
        _set("messages.0.created_at", ...),
        'message 1 (id "m1"): "created_at" is missing.',
    ),
    (
        "created_at garbage",
        _set("messages.0.created_at", "yesterday"),
        '"created_at" is not an ISO-8601 timestamp: "yesterday"',
    ),
    (
        "created_at null",
        _set("messages.0.created_at", None),
        '"created_at" must be an ISO-8601 timestamp',
    ),
    (
        "created_at year 1",
        _set("messages.0.created_at", "0001-01-01T00:00:00"),
        '"created_at" is out of range',
    ),
    (
        "conversation created_at garbage",
        _set("conversation.created_at", "soon"),
        'conversation: "created_at" is not an ISO-8601 timestamp',
    ),
    (
        "title a number",
        _set("conversation.title", 3),
        'conversation: "title" must be a string, not a number.',
    ),
    (
        "missing parent",
        _parent(3, "ghost"),
        'message 4 (id "m4") names a parent that is not in the file ("ghost").',
    ),
    (
        "duplicate id",
        _set("messages.2.id", "m1"),
        'message 3 (id "m1") repeats the id of message 1.',
    ),
    ("cycle", _parent(0, "m4"), "the parent links form a cycle"),
    ("self parent", _parent(1, "m2"), 'message 2 (id "m2") is its own ancestor'),
    (
        "leaf not in the file",
        _set("conversation.current_leaf_id", "nope"),
        'conversation: "current_leaf_id" "nope" is not a message in the file.',
    ),
    (
        "invalid parameter",
        _set("conversation.parameters", {"temperature": 9}),
        'conversation: "parameters" are invalid: Temperature must be between 0 and 2',
    ),
    (
        "tools not a list",
        _set("conversation.parameters", {"tools": "calculator"}),
        '"parameters.tools" must be a list of tool names',
    ),
    (
        "tool choice a number",
        _set("conversation.parameters", {"tool_choice": 1}),
        '"parameters.tool_choice" must be a string',
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [(c, e) for _, c, e in REFUSALS], ids=[name for name, _, _ in REFUSALS]
)
def test_import_refusals(change: Callable[[dict[str, Any]], None], expected: str) -> None:
    document = _valid()
    change(document)
    with pytest.raises(ImportRefused) as refused:
        import_file.parse_import(json.dumps(document))
    assert expected in str(refused.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"[]", "Not a Parley conversation export: the file holds a list, not an object."),
        (b'"text"', "the file holds a string, not an object"),
        (b'{\n  "format": \n}', "The file is not valid JSON: Expecting value at line 3, column 1."),
        (b'{"format": NaN}', "The file is not valid JSON: NaN is not a JSON number."),
        (b'{"format": "\xff"}', "The file is not UTF-8 text: byte 0xff at position 12 is invalid."),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"n": ' + b"9" * 5000 + b"}", "a number is too long"),
        ("\ufeff[]", "the file holds a list"),  # a BOM is accepted, then the content refused
    ],
)
def test_import_refuses_unreadable_files(data: bytes | str, expected: str) -> None:
    with pytest.raises(ImportRefused) as refused:
        import_file.parse_import(data)
    assert expected in str(refused.value)


def test_import_refuses_files_over_the_limits() -> None:
    data = json.dumps(_valid())
    size = len(data.encode())
    with pytest.raises(ImportRefused, match=rf"too large \({size:,} bytes; the limit is 100 "):
        import_file.parse_import(data, max_bytes=100)
    assert import_file.parse_import(data, max_bytes=size).title == "T"
    with pytest.raises(ImportRefused, match="The file holds 4 messages; the limit is 3."):
        import_file.parse_import(data, max_messages=3)
    assert len(import_file.parse_import(data, max_messages=4).messages) == 4


def test_full_exports_are_read_with_parse_import_all() -> None:
    first, second = _valid(), _valid()
    second["conversation"]["title"] = "Second"
    full: dict[str, Any] = {
        "format": "parley.export.v1",
        "exported_at": "x",
        "conversations": [first, second],
    }
    assert [c.title for c in import_file.parse_import_all(json.dumps(full))] == ["T", "Second"]
    assert [c.title for c in import_file.parse_import_all(json.dumps(first))] == ["T"]
    with pytest.raises(ImportRefused, match="full export holding 2 conversations"):
        import_file.parse_import(json.dumps(full))
    one = {**full, "conversations": [second]}
    assert import_file.parse_import(json.dumps(one)).title == "Second"
    broken = copy.deepcopy(full)
    broken["conversations"][1]["messages"][0]["role"] = "wizard"
    with pytest.raises(ImportRefused, match='Conversation 2 of the export: message 1 .* "wizard"'):
        import_file.parse_import_all(json.dumps(broken))
    with pytest.raises(ImportRefused, match="holds no conversations"):
        import_file.parse_import_all(json.dumps({**full, "conversations": []}))
    with pytest.raises(ImportRefused, match='needs a "conversations" list, not null'):
        import_file.parse_import_all(json.dumps({"format": "parley.export.v1"}))
    with pytest.raises(ImportRefused, match="holds 8 messages; the limit is 7"):
        import_file.parse_import_all(json.dumps(full), max_messages=7)


def test_import_record_is_plain_data() -> None:
    imported = import_file.parse_import(json.dumps(_valid()))
    assert isinstance(imported, transfer.ImportedConversation)
    assert replace(imported, title="x").title == "x"
    assert set(imported.messages[0]) == {
        "id",
        "parent_id",
        "role",
        "content",
        "reasoning",
        "tool_calls",
        "tool_call_id",
        "name",
        "tool_status",
        "provider",
        "model",
        "parameters",
        "usage",
        "timings",
        "finish_reason",
        "state",
        "error",
        "feedback",
        "preferred",
        "choice_index",
        "batch_id",
        "attachments",
        "created_at",
    }


def test_deeply_nested_files_are_refused_not_recursed() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(900):
        node["a"] = {}
        node = node["a"]
    document = {
        "format": "parley.conversation.v1",
        "conversation": {"title": "t", "parameters": deep},
        "messages": [],
    }
    with pytest.raises(ImportRefused, match="more than 64 levels deep"):
        import_file.parse_import(json.dumps(document))


def test_a_comparison_keeps_its_mode_and_best_answer_through_export_and_import(
    call: Call, alice: int, bob: int
) -> None:
    conversation = call(repo.create_conversation, user_id=alice, title="Which model?")

    def mark(session: Any) -> list[str]:
        row = session.get(Conversation, conversation.id)
        row.mode = "compare"
        session.add(row)
        session.commit()
        question = message_rows.add_message(
            session=session,
            user_id=alice,
            conversation_id=conversation.id,
            parent_id=None,
            role="user",
            content="Pick one",
        )
        ids = []
        for index, model in enumerate(("m-a", "m-b")):
            answer = message_rows.add_message(
                session=session,
                user_id=alice,
                conversation_id=conversation.id,
                parent_id=question.id,
                role="assistant",
                content=f"answer {index}",
                model=model,
                choice_index=index,
                batch_id="b" * 32,
                make_current=index == 1,
            )
            ids.append(answer.id)
        best = session.get(Message, ids[1])
        best.preferred = True
        session.add(best)
        session.commit()
        return ids

    call(lambda session: mark(session))
    original, messages = call(
        transfer.export_conversation, user_id=alice, conversation_id=conversation.id
    )
    document = export.conversation_json(original, messages)
    assert document["conversation"]["mode"] == "compare"
    imported = import_file.parse_import(json.dumps(document))
    assert imported.mode == "compare"
    copy_id = call(transfer.import_conversation, user_id=bob, imported=imported)
    copied, rows = call(transfer.export_conversation, user_id=bob, conversation_id=copy_id)
    assert copied.mode == "compare"
    assert [(m.model, m.preferred) for m in rows if m.role == "assistant"] == [
        ("m-a", False),
        ("m-b", True),
    ]
    with pytest.raises(ImportRefused, match='"mode" must be "chat" or "compare"'):
        broken = copy.deepcopy(document)
        broken["conversation"]["mode"] = "arena"
        import_file.parse_import(json.dumps(broken))
