"""Compare view, service level: three models at once against the fake upstream on loopback,
on a SQLite file and on PostgreSQL; prices, blind labels and the Markdown export."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import accounts, tree
from storage import repository as repo
from storage.models import Message, utc_now
from tests.fake_openai import ErrorReply, FakeOpenAI, Reply
from webapp.app.chat import UPDATE_INTERVAL_S, ChatService, TurnRefused
from webapp.app.compare import CompareService, CompareUpdate
from webapp.app.compare_export import compare_markdown
from webapp.app.compare_rounds import ColumnSpec, column_labels, compare_rounds, following
from webapp.app.error_text import user_message
from webapp.core.params import ParamError
from webapp.provider.error_info import parse_error
from webapp.provider.pricing import (
    Cost,
    PriceFileError,
    PriceTable,
    format_cost,
    load_prices,
    parse_prices,
)

A = ColumnSpec("siliconflow", "fast/a")
B = ColumnSpec("jiekou", "slow/b")
C = ColumnSpec("siliconflow", "bad/c")
COLUMNS = [A, B, C]
SYSTEM = "Answer briefly."
PRICES = [
    {"match": "fast/a", "provider": "siliconflow", "input": 2, "output": 8, "currency": "CNY"},
    {"match": "slow/.*", "input": 0.5, "output": 1.5, "currency": "USD"},
]


@pytest.fixture
def service_env() -> dict[str, str]:
    return {"JIEKOU_API_KEY": "j"}


@pytest.fixture
def compare(service: ChatService, tmp_path: Path) -> CompareService:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES), encoding="utf-8")
    return CompareService(service, load_prices(str(prices)))


async def user_id(compare: CompareService, name: str = "local") -> int:
    user = await compare.service.db(lambda s: repo.ensure_user(session=s, username=name))
    assert user.id is not None
    return user.id


async def run_round(
    compare: CompareService,
    uid: int,
    conversation_id: str | None,
    text: str,
    columns: list[ColumnSpec] = COLUMNS,
    **extra: Any,
) -> tuple[CompareUpdate, int]:
    last, count = None, 0
    async for update in compare.stream_compare(
        user_id=uid,
        conversation_id=conversation_id,
        text=text,
        columns=columns,
        system_prompt=SYSTEM,
        params=extra.pop("params", {}),
        api_keys={},
        **extra,
    ):
        last, count = update, count + 1
    assert last is not None
    return last, count


def script_round(fake: FakeOpenAI, n: int = 1) -> None:
    """Three columns: A fast with thinking, B slow to start, C refused with 429."""
    fake.enqueue(
        Reply(
            content=f"Alpha answer {n} in five words",
            reasoning="Thinking it over",
            chunk_words=1,
            first_delay=0.1,
            delay=0.05,
            prompt_tokens=12,
        ),
        model=A.model,
    )
    fake.enqueue(
        Reply(
            content=f"Beta answer {n} here",
            chunk_words=1,
            first_delay=0.4,
            delay=0.02,
            prompt_tokens=13,
        ),
        model=B.model,
    )
    fake.enqueue(ErrorReply(429, '{"message": "TPM limit reached"}'), model=C.model)


def chat_bodies(fake: FakeOpenAI) -> dict[str, list[dict[str, Any]]]:
    bodies: dict[str, list[dict[str, Any]]] = {}
    for record in fake.requests:
        if record["path"].endswith("/chat/completions"):
            bodies.setdefault(record["json"]["model"], []).append(record)
    return bodies


async def stored(
    compare: CompareService, uid: int, conversation_id: str
) -> tuple[Any, list[Message]]:
    thread = await compare.load(user_id=uid, conversation_id=conversation_id)
    return thread.conversation, thread.messages


# ---- one round -------------------------------------------------------------------------------


async def test_three_columns_stream_concurrently_and_one_failure_stays_in_its_column(
    compare: CompareService, fake: FakeOpenAI
) -> None:
    uid = await user_id(compare)
    script_round(fake)
    loop = asyncio.get_running_loop()
    started = loop.time()
    final, yields = await run_round(compare, uid, None, "Compare yourselves")
    wall = loop.time() - started

    a, b, c = final.columns
    assert final.state == "complete"
    assert [col.state for col in final.columns] == ["complete", "complete", "error"]
    assert a.progress.choices[0].content == "Alpha answer 1 in five words"
    assert a.progress.choices[0].reasoning == "Thinking it over"
    assert b.progress.choices[0].content == "Beta answer 1 here"
    shown = user_message(c.error)
    assert "rate-limiting" in shown and "TPM limit reached" in shown

    # Concurrency, from the fake's clock: all three requests arrived together, long before the
    # fastest column could have finished (one after another, B would start after A ended).
    arrivals = sorted(r["received_at"] for r in fake.requests)
    durations = [col.progress.timings()["duration_ms"] / 1000 for col in (a, b)]
    assert len(arrivals) == 3 and arrivals[-1] - arrivals[0] < 0.15 < 0.5 <= min(durations)
    assert yields <= wall / UPDATE_INTERVAL_S + 4  # coalesced: one update per interval at most

    timings_a, timings_b = a.progress.timings(), b.progress.timings()
    assert 150 <= timings_a["ttft_ms"] <= 150 + 250  # first_delay 0.1 + one delay 0.05
    assert 420 <= timings_b["ttft_ms"] <= 420 + 250  # first_delay 0.4 + one delay 0.02
    assert a.progress.usage_dict() == {
        "prompt_tokens": 12,
        "completion_tokens": 9,
        "reasoning_tokens": 3,
        "total_tokens": 21,
    }
    assert b.progress.usage_dict()["completion_tokens"] == 4  # type: ignore[index]
    assert a.cost == Cost((12 * 2 + 9 * 8) / 1e6, "CNY", 12, 9)
    assert format_cost(b.cost) == "<$0.0001"
    assert c.cost is None

    conversation, messages = await stored(compare, uid, final.conversation_id)
    assert conversation.mode == "compare" and conversation.title == "Compare yourselves"
    user = next(m for m in messages if m.role == "user")
    answers = sorted((m for m in messages if m.role == "assistant"), key=lambda m: m.choice_index)
    assert [m.parent_id for m in answers] == [user.id] * 3
    assert len({m.batch_id for m in answers}) == 1 and answers[0].batch_id
    assert [m.choice_index for m in answers] == [0, 1, 2]
    assert [(m.provider, m.model) for m in answers] == [(s.provider, s.model) for s in COLUMNS]
    assert [m.state for m in answers] == ["complete", "complete", "error"]
    assert answers[0].usage == a.progress.usage_dict()
    assert answers[0].timings and answers[0].timings["ttft_ms"] == timings_a["ttft_ms"]
    assert answers[1].content == "Beta answer 1 here"
    assert answers[2].content == "" and answers[2].usage is None
    assert parse_error(answers[2].error) == c.error  # stored as data, not as the wording
    assert conversation.current_leaf_id == answers[0].id  # column 0 until one is marked best
    assert not any(m.preferred for m in answers)
    assert chat_bodies(fake)[B.model][0]["json"]["max_tokens"] == 4096  # jiekou's default


async def test_stop_saves_every_column_and_closes_every_stream(
    compare: CompareService, fake: FakeOpenAI
) -> None:
    uid = await user_id(compare)
    fake.enqueue(
        Reply(content="Partial from A that never ends", chunk_chars=5, stall_after=3), model=A.model
    )
    fake.enqueue(
        Reply(content="Partial from B that never ends", chunk_chars=5, stall_after=3), model=B.model
    )
    seen: list[CompareUpdate] = []

    async def consume() -> None:
        async for update in compare.stream_compare(
            user_id=uid, conversation_id=None, text="Long story", columns=[A, B]
        ):
            seen.append(update)

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        while not (seen and all(c.progress.choices[0].content for c in seen[-1].columns)):
            await asyncio.sleep(0.01)
    task.cancel()  # the viewer leaves: the columns go on ...
    with pytest.raises(asyncio.CancelledError):
        await task
    conversation_id = seen[-1].conversation_id
    assert len(compare.service.runs.live(uid, conversation_id)) == 2
    assert await compare.stop(uid, conversation_id) == 2  # ... until Stop
    assert await asyncio.to_thread(fake.wait_for_disconnect, 5.0, 2)
    _, messages = await stored(compare, uid, conversation_id)
    answers = [m for m in messages if m.role == "assistant"]
    assert [m.state for m in answers] == ["stopped", "stopped"]
    assert all(m.content.startswith("Parti") for m in answers)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (ErrorReply(401, '"Invalid token"'), "rejected the API key"),
        (
            Reply(content="never sent", first_delay=3.0),
            "sent no answer for 0.5 s (the READ_TIMEOUT",
        ),
    ],
    ids=["bad-key", "timeout"],
)
async def test_a_bad_key_or_a_timeout_stays_in_its_column(
    compare: CompareService, fake: FakeOpenAI, failure: Reply | ErrorReply, expected: str
) -> None:
    uid = await user_id(compare)
    for client in compare.service.clients.values():
        client.read_timeout_s = 0.5  # type: ignore[attr-defined]
    fake.enqueue(Reply(content="Fine here", chunk_words=1, delay=0.05), model=A.model)
    fake.enqueue(failure, failure, model=B.model)  # a silent start is tried twice
    final, _ = await run_round(compare, uid, None, "Go", [A, B])
    good, bad = final.columns
    assert (good.state, good.progress.choices[0].content) == ("complete", "Fine here")
    assert bad.state == "error" and expected in user_message(bad.error)
    _, messages = await stored(compare, uid, final.conversation_id)
    assert [(m.state, bool(m.error)) for m in messages if m.role == "assistant"] == [
        ("complete", False),
        ("error", True),
    ]


async def test_refusals_happen_before_anything_is_sent(
    compare: CompareService, fake: FakeOpenAI
) -> None:
    uid = await user_id(compare)
    cases: list[tuple[list[ColumnSpec], str, dict[str, Any], str]] = [
        ([A], "hi", {}, "2 to 4"),
        ([A, B, C, ColumnSpec("jiekou", "x"), ColumnSpec("jiekou", "y")], "hi", {}, "2 to 4"),
        ([A, A], "hi", {}, "different model"),
        ([A, B], "   ", {}, "Type a prompt"),
        ([A, ColumnSpec("nowhere", "m")], "hi", {}, "Unknown provider"),
    ]
    for columns, text, params, expected in cases:
        with pytest.raises(TurnRefused, match=expected):
            await run_round(compare, uid, None, text, columns, params=params)
    with pytest.raises(ParamError, match="Temperature"):
        await run_round(compare, uid, None, "hi", [A, B], params={"temperature": "9"})
    assert fake.requests == []


# ---- votes, next rounds, one model ---------------------------------------------------------


async def test_best_next_round_histories_and_continue_with_one_model(
    compare: CompareService, fake: FakeOpenAI
) -> None:
    uid = await user_id(compare)
    script_round(fake, 1)
    first, _ = await run_round(compare, uid, None, "Question one")
    conversation_id = first.conversation_id
    a1, b1, c1 = (col.message_id for col in first.columns)

    await compare.mark_best(user_id=uid, conversation_id=conversation_id, message_id=b1)
    conversation, messages = await stored(compare, uid, conversation_id)
    assert conversation.current_leaf_id == b1
    assert {m.id: m.preferred for m in messages if m.role == "assistant"} == {
        a1: False,
        b1: True,
        c1: False,
    }
    await compare.mark_best(user_id=uid, conversation_id=conversation_id, message_id=a1)
    _, messages = await stored(compare, uid, conversation_id)
    assert [m.id for m in messages if m.preferred] == [a1]

    script_round(fake, 2)
    second, _ = await run_round(compare, uid, conversation_id, "Question two")
    assert second.columns[0].progress.choices[0].content == "Alpha answer 2 in five words"
    bodies = chat_bodies(fake)
    system = {"role": "system", "content": SYSTEM}
    assert bodies[A.model][1]["json"]["messages"] == [
        system,
        {"role": "user", "content": "Question one"},
        {"role": "assistant", "content": "Alpha answer 1 in five words"},
        {"role": "user", "content": "Question two"},
    ]
    assert bodies[B.model][1]["json"]["messages"] == [
        system,
        {"role": "user", "content": "Question one"},
        {"role": "assistant", "content": "Beta answer 1 here"},
        {"role": "user", "content": "Question two"},
    ]
    assert bodies[C.model][1]["json"]["messages"] == [  # its failed answer is left out
        system,
        {"role": "user", "content": "Question one"},
        {"role": "user", "content": "Question two"},
    ]
    _, messages = await stored(compare, uid, conversation_id)
    question_two = next(m for m in messages if m.content == "Question two")
    assert question_two.parent_id == a1  # the round continues from the best answer

    with pytest.raises(TurnRefused, match="between fast/a, slow/b, bad/c"):
        await run_round(compare, uid, conversation_id, "Other models", [A, B])
    with pytest.raises(TurnRefused, match="Continue with"):
        await run_round(compare, uid, conversation_id, "Only B", [B])

    b2 = second.columns[1].message_id
    spec = await compare.continue_with(user_id=uid, conversation_id=conversation_id, message_id=b2)
    assert spec == B
    conversation, _ = await stored(compare, uid, conversation_id)
    assert (conversation.current_leaf_id, conversation.provider, conversation.model) == (
        b2,
        "jiekou",
        "slow/b",
    )
    with pytest.raises(TurnRefused, match="latest round"):
        await compare.continue_with(user_id=uid, conversation_id=conversation_id, message_id=b1)

    fake.enqueue(Reply(content="Beta alone", prompt_tokens=20), model=B.model)
    alone, _ = await run_round(compare, uid, conversation_id, "Question three", [B])
    assert [col.index for col in alone.columns] == [1] and alone.batch_id is None
    assert chat_bodies(fake)[B.model][2]["json"]["messages"] == [
        system,
        {"role": "user", "content": "Question one"},
        {"role": "assistant", "content": "Beta answer 1 here"},
        {"role": "user", "content": "Question two"},
        {"role": "assistant", "content": "Beta answer 2 here"},
        {"role": "user", "content": "Question three"},
    ]
    conversation, messages = await stored(compare, uid, conversation_id)
    row = next(m for m in messages if m.id == alone.columns[0].message_id)
    assert (row.batch_id, row.choice_index, row.model, row.content) == (
        None,
        0,
        "slow/b",
        "Beta alone",
    )
    assert conversation.mode == "compare" and conversation.current_leaf_id == row.id
    rounds = compare_rounds(tree.active_path(messages, conversation.current_leaf_id), messages)
    assert [r.compare for r in rounds] == [True, True, False] and following(rounds) == 1
    with pytest.raises(TurnRefused, match="continues with one model"):
        await run_round(compare, uid, conversation_id, "All again", COLUMNS)

    # Another user can neither vote nor continue in this comparison.
    other = await user_id(compare, "mallory")
    with pytest.raises(repo.NotFound):
        await compare.mark_best(user_id=other, conversation_id=conversation_id, message_id=b2)
    with pytest.raises(repo.NotFound):
        await run_round(compare, other, conversation_id, "Let me in", COLUMNS)

    markdown = compare_markdown(conversation, messages, compare.prices)
    for text in (
        "Question one",
        "Question two",
        "Question three",
        "## Round 3 (one model)",
        "### Column A · fast/a (siliconflow) — ★ best",
        "### Column B · slow/b (jiekou)",
        "<details><summary>Thinking</summary>\n\nThinking it over\n\n</details>",
        "Alpha answer 1 in five words",
        "Beta alone",
        "rate-limiting",
        "**Best:** Column A · fast/a (siliconflow)",
        "_No answer was marked best in this round._",
        "cost unknown",
        "cost <¥0.0001",
        "12 prompt · 9 completion · 3 reasoning tokens",
        "first token 0.",
    ):
        assert text in markdown, text
    assert markdown.index("Question one") < markdown.index("Question two")


async def test_compare_refuses_a_chat_and_votes_on_non_compare_rows(
    compare: CompareService, fake: FakeOpenAI
) -> None:
    uid = await user_id(compare)
    chat = await compare.service.db(lambda s: repo.create_conversation(session=s, user_id=uid))
    with pytest.raises(TurnRefused, match="is a chat"):
        await run_round(compare, uid, chat.id, "hi", [A, B])
    fake.enqueue(Reply(content="a"), model=A.model)
    fake.enqueue(Reply(content="b"), model=B.model)
    final, _ = await run_round(compare, uid, None, "hi", [A, B])
    _, messages = await stored(compare, uid, final.conversation_id)
    user = next(m for m in messages if m.role == "user")
    with pytest.raises(TurnRefused, match="not an answer of a comparison"):
        await compare.mark_best(
            user_id=uid, conversation_id=final.conversation_id, message_id=user.id
        )


# ---- pure parts: prices, labels --------------------------------------------------------------


def test_prices_match_exact_before_pattern_and_provider_before_any() -> None:
    table = parse_prices(
        [
            {"match": "qwen/.*", "input": 1, "output": 2, "currency": "CNY"},
            {"match": "qwen/.*", "provider": "jiekou", "input": 3, "output": 4, "currency": "USD"},
            {"match": "Qwen/Qwen3-8B", "input": 0, "output": 0, "currency": "CNY"},
        ]
    )
    usage = {"prompt_tokens": 1000, "completion_tokens": 500, "reasoning_tokens": 200}
    assert table.cost("siliconflow", "Qwen/Qwen3-8B", usage) == Cost(0.0, "CNY", 1000, 500)
    assert table.cost("siliconflow", "qwen/qwen3-32b", usage) == Cost(0.002, "CNY", 1000, 500)
    assert table.cost("jiekou", "qwen/qwen3-32b", usage) == Cost(0.005, "USD", 1000, 500)
    assert table.cost("jiekou", "deepseek/x", usage) is None
    assert table.cost("jiekou", "qwen/qwen3-32b", None) is None
    # Reasoning is billed as output even where a server reports it outside completion_tokens.
    odd = {"prompt_tokens": 0, "completion_tokens": 10, "reasoning_tokens": 90}
    assert table.cost("siliconflow", "qwen/x", odd) == Cost(90 * 2 / 1e6, "CNY", 0, 90)


def test_format_cost() -> None:
    assert format_cost(Cost(0.0123, "CNY")) == "¥0.0123"
    assert format_cost(Cost(0.0004, "USD")) == "$0.0004"
    assert format_cost(Cost(0.00001, "USD")) == "<$0.0001"
    assert format_cost(Cost(0, "EUR")) == "€0"
    assert format_cost(Cost(1.5, "CHF")) == "1.5000 CHF"
    assert format_cost(None) == "unknown"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"match": "x"}', "must be a JSON list"),
        ("[1]", "entry 1 must be an object"),
        ('[{"input": 1, "output": 1, "currency": "CNY"}]', 'needs "match"'),
        ('[{"match": "(", "input": 1, "output": 1, "currency": "CNY"}]', "regular expression"),
        (
            '[{"match": "x", "input": "1", "output": 1, "currency": "CNY"}]',
            '"input" must be a number',
        ),
        ('[{"match": "x", "input": 1, "output": -1, "currency": "CNY"}]', "must not be negative"),
        ('[{"match": "x", "input": 1, "output": 1, "currency": "yuan"}]', "3-letter code"),
        (
            '[{"match": "x", "input": 1, "output": 1, "currency": "CNY", "inptu": 2}]',
            "unknown keys",
        ),
        ('[{"match": "x", "input": 1, "output": 1, "currency": "CNY", "provider": 3}]', "provider"),
    ],
)
def test_malformed_price_files_say_what_to_fix(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PriceFileError, match=message) as caught:
        load_prices(str(path))
    assert str(path) in str(caught.value)


def test_price_file_missing_or_unset(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match="Cannot read"):
        load_prices(str(tmp_path / "nope.json"))
    assert len(load_prices("")) == 0
    assert PriceTable().cost("x", "y", {"prompt_tokens": 1}) is None


def test_blind_labels_hide_models_until_a_vote() -> None:
    models = ["fast/a", "slow/b", "bad/c"]
    assert column_labels(models, blind=True, revealed=False) == ["Model A", "Model B", "Model C"]
    assert column_labels(models, blind=True, revealed=True) == models
    assert column_labels(models, blind=False, revealed=False) == models


# ---- usage -----------------------------------------------------------------------------------


async def test_every_column_counts_as_a_request_in_usage_and_limits(
    compare: CompareService, fake: FakeOpenAI
) -> None:
    """Each column is its own upstream request, so the admin's usage table and the
    requests-per-minute limit count all of them (chat choices n>1 share one request)."""
    uid = await user_id(compare)
    script_round(fake)
    await run_round(compare, uid, None, "Compare yourselves")
    since = utc_now() - timedelta(minutes=5)
    rows = await compare.service.db(lambda s: accounts.usage_since(session=s, since=since))
    by_model = {row.model: row for row in rows}
    assert {model: row.requests for model, row in by_model.items()} == {
        A.model: 1,
        B.model: 1,
        C.model: 1,
    }
    assert by_model[A.model].prompt_tokens == 12 and by_model[B.model].prompt_tokens == 13
    assert by_model[C.model].errors == 1
    requests = await compare.service.db(
        lambda s: accounts.requests_since(session=s, user_id=uid, since=since)
    )
    assert requests == 3


async def test_text_no_database_stores_is_replaced_as_in_chat_and_every_column_answers(
    compare: CompareService, fake: FakeOpenAI
) -> None:
    """The one orchestrator cleans a prompt the same way for Chat and Compare: a lone
    surrogate (which breaks the request and the database) becomes U+FFFD."""
    uid = await user_id(compare)
    updates = [
        update
        async for update in compare.stream_compare(
            user_id=uid,
            conversation_id=None,
            text="hi \ud800 there",
            columns=[A, B],
            system_prompt="be \x00 brief",
        )
    ]
    final = updates[-1]
    assert [c.state for c in final.columns] == ["complete", "complete"]
    assert [c.progress.choices[0].content for c in final.columns] == ["Echo: hi \ufffd there"] * 2
    sent = [r["json"]["messages"] for r in fake.requests]
    assert all(
        m
        == [
            {"role": "system", "content": "be \ufffd brief"},
            {"role": "user", "content": "hi \ufffd there"},
        ]
        for m in sent
    )
