"""The context gauge and what happens when a conversation outgrows the model's window: the
pure arithmetic, a server's /models figure, and ChatService turns against the fake upstream
with a real SQLite file."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage import repository as repo
from tests.fake_openai import FakeOpenAI, Reply
from tests.services import stored_path
from webapp.app.chat import ChatService, ContextFull
from webapp.app.chat_request import NewMessage, TurnSettings
from webapp.app.summary import SummaryMissing, start_from_summary
from webapp.config import load_settings
from webapp.core.capabilities import CapabilityFileError, CapabilityTable, Rule, load_rules
from webapp.core.context import (
    DEFAULT_CONTEXT_TOKENS,
    ContextLimit,
    Gauge,
    answer_room,
    context_limit,
    fit_messages,
    used_tokens,
    would_exceed,
)
from webapp.provider.client import ProviderClient


@dataclass
class Stored:  # the fields of a stored message the gauge reads
    role: str
    content: str
    usage: dict[str, Any] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None


# ---- the arithmetic -------------------------------------------------------------------------
def test_the_providers_count_is_used_and_only_what_came_after_it_is_estimated() -> None:
    path = [
        Stored("user", "x" * 400),
        Stored(
            "assistant",
            "y" * 40,
            usage={"prompt_tokens": 130, "completion_tokens": 50, "reasoning_tokens": 30},
        ),
        Stored("user", "z" * 80),
    ]
    used, estimated = used_tokens(path)
    # 130 prompt + 20 answer (its 30 reasoning tokens are not sent back) + 4 + 20 estimated.
    assert (used, estimated) == (174, True)
    assert used_tokens(path[:2]) == (150, False)


def test_without_usage_everything_is_an_estimate_system_prompt_included() -> None:
    path = [
        Stored("user", "x" * 400),
        Stored(
            "assistant",
            "y" * 40,
            usage={"prompt_tokens": 9, "completion_tokens": 10, "estimated": True},
        ),
    ]
    used, estimated = used_tokens(path, system_prompt="s" * 40)
    assert estimated
    assert used == (4 + 10) + (4 + 100) + (4 + 10)


def test_the_window_comes_from_the_server_then_the_table_then_a_default() -> None:
    caps = CapabilityTable().lookup("Qwen/Qwen3-8B", "siliconflow", "siliconflow")
    assert context_limit("Qwen/Qwen3-8B", caps, {"Qwen/Qwen3-8B": 40_960}) == ContextLimit(
        40_960, "server"
    )
    assert context_limit("Qwen/Qwen3-8B", caps, {}) == ContextLimit(131_072, "table")
    unknown = CapabilityTable().lookup("acme/mystery-7b")
    assert context_limit("acme/mystery-7b", unknown, {}) == ContextLimit(
        DEFAULT_CONTEXT_TOKENS, "assumed"
    )


def test_the_gauge_turns_amber_at_80_percent_and_says_when_it_is_full() -> None:
    window = ContextLimit(10_000, "table")
    assert Gauge(7_999, False, window).level == "ok"
    assert Gauge(8_000, False, window).level == "amber"
    assert Gauge(10_000, True, window).level == "over"
    assert Gauge(1_234, False, window).text() == "Context: 1.2k of 10k tokens (12 %)"
    assert Gauge(8_500, True, window).text().startswith("⚠ Context: ≈8.5k of 10k tokens (85 %)")
    assert "full" in Gauge(12_000, False, window).text()
    assumed = Gauge(100, True, ContextLimit(DEFAULT_CONTEXT_TOKENS, "assumed")).text("zh")
    assert "CAPABILITIES_FILE" in assumed and "上下文" in assumed


def test_only_a_known_window_refuses() -> None:
    assert would_exceed(900, 200, ContextLimit(1_000, "table"))
    assert not would_exceed(800, 200, ContextLimit(1_000, "server"))
    assert not would_exceed(5_000, 0, ContextLimit(1_000, "assumed"))


def test_dropping_keeps_the_system_prompt_and_the_last_question_and_cuts_whole_turns() -> None:
    system = {"role": "system", "content": "Be brief."}
    turns = [
        [
            {"role": "user", "content": f"q{n} " + "x" * 400},
            {"role": "assistant", "content": "a" * 400, "tool_calls": None},
        ]
        for n in range(5)
    ]
    last = {"role": "user", "content": "the last question"}
    messages = [system, *(m for turn in turns for m in turn), last]
    fitted, dropped = fit_messages(messages, ContextLimit(600, "table"), reserve=0)
    assert fitted[0] == system and fitted[-1] == last
    # 540 tokens of budget (10 % headroom): two old turns of 209 and the rest still fit.
    assert dropped == 3
    assert fitted[1]["content"].startswith("q3 ") and len(fitted) == 6
    # Whatever the budget, the last question goes (the provider's error says if it is too long).
    fitted, dropped = fit_messages(messages, ContextLimit(256, "table"), reserve=200)
    assert fitted == [system, last] and dropped == 5


def test_a_tools_images_message_stays_in_its_turn_when_turns_are_dropped() -> None:
    images = {"role": "user", "content": [{"type": "text", "text": "The images returned by …"}]}
    old = [
        {"role": "user", "content": "q0 " + "x" * 800},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "[image 1: image/png]"},
        images,
        {"role": "assistant", "content": "a" * 800},
    ]
    last = {"role": "user", "content": "the last question"}
    fitted, dropped = fit_messages([*old, last], ContextLimit(300, "table"), reserve=0)
    assert (fitted, dropped) == ([last], 1)  # not [images, answer, last]: one turn, dropped whole


def test_a_context_tokens_override_must_be_a_sensible_whole_number(tmp_path: Path) -> None:
    rules = tmp_path / "caps.json"
    rules.write_text(json.dumps([{"match": "mystery", "context_tokens": 65_536}]))
    table = CapabilityTable(load_rules(str(rules)))
    assert table.lookup("acme/mystery-7b").context_tokens == 65_536
    for bad in (True, 12.5, 100, 20_000_000, "8k"):
        rules.write_text(json.dumps([{"match": "mystery", "context_tokens": bad}]))
        with pytest.raises(CapabilityFileError, match="context_tokens must be a whole number"):
            load_rules(str(rules))


# ---- the server's /models listing --------------------------------------------------------------
async def test_a_servers_models_listing_gives_the_window(fake: FakeOpenAI) -> None:
    fake.models = ["vllm/model", "llamacpp/model", "plain/model", "odd/model"]
    fake.model_fields = {
        "vllm/model": {"max_model_len": 40_960},
        "llamacpp/model": {"meta": {"n_ctx_train": 8_192}},
        "odd/model": {"context_length": "lots"},
    }
    settings = load_settings(
        {"EXTRA_PROVIDERS": "vllm", "VLLM_BASE_URL": fake.base_url}, dotenv_path=None
    )
    config = settings.provider("vllm")
    async with httpx.AsyncClient() as http:
        client = ProviderClient(http, config)
        assert await client.list_models() == sorted(fake.models)
    assert client.context_lengths == {"vllm/model": 40_960, "llamacpp/model": 8_192}


# ---- turns that would not fit ----------------------------------------------------------------
WINDOW = 400
TURN = TurnSettings(provider="siliconflow", model="Qwen/Qwen3-8B", system_prompt="Be brief.")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """These cases are about the context, not storage: SQLite only."""
    return f"sqlite:///{tmp_path / 'parley.db'}"


@pytest.fixture
def service_capabilities() -> CapabilityTable:
    return CapabilityTable((Rule("Qwen3-8B", {"context_tokens": WINDOW}),))


async def turn(
    service: ChatService,
    uid: int,
    conversation_id: str | None,
    text: str,
    settings: TurnSettings = TURN,
) -> Any:
    last = None
    async for update in service.stream_turn(
        user_id=uid, conversation_id=conversation_id, action=NewMessage(text), turn=settings
    ):
        last = update
    assert last is not None and last.state == "complete", last
    return last


async def a_full_conversation(service: ChatService, fake: FakeOpenAI) -> tuple[int, str]:
    """A conversation at 230 of 400 tokens by the provider's count: the next 800-character
    question (≈204 tokens) would not fit."""
    user = await service.db(lambda s: repo.ensure_user(session=s, username="local"))
    assert user.id is not None
    fake.enqueue(Reply(content="First answer.", prompt_tokens=220))
    first = await turn(service, user.id, None, "x" * 800)
    return user.id, first.conversation_id


async def test_a_send_that_would_not_fit_is_refused_and_nothing_is_stored_or_sent(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid, conversation_id = await a_full_conversation(service, fake)
    gauge = await service.context_gauge(
        user_id=uid, conversation_id=conversation_id, provider="siliconflow", model="Qwen/Qwen3-8B"
    )
    assert (
        gauge is not None and not gauge.estimated and gauge.limit == ContextLimit(WINDOW, "table")
    )
    assert gauge.used > 220 and gauge.level == "ok"
    sent = len(fake.requests)
    with pytest.raises(ContextFull, match="would not fit Qwen/Qwen3-8B's context of 400 tokens"):
        await turn(service, uid, conversation_id, "y" * 800)
    assert len(fake.requests) == sent
    assert [m.content[:1] for m in await stored_path(service, uid, conversation_id)] == ["x", "F"]


async def test_dropping_the_oldest_turns_sends_what_fits_and_keeps_them_stored(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid, conversation_id = await a_full_conversation(service, fake)
    fake.enqueue(Reply(content="Second answer.", prompt_tokens=230))
    update = await turn(service, uid, conversation_id, "y" * 800, replace(TURN, fit_context=True))
    assert any("1 oldest turns were left out" in note for note in update.notes)
    assert fake.requests[-1]["json"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "y" * 800},
    ]
    assert len(await stored_path(service, uid, conversation_id)) == 4  # nothing deleted


async def test_a_new_chat_starts_from_the_summary_with_the_old_settings(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid, conversation_id = await a_full_conversation(service, fake)

    def start(session: Any) -> str:
        return start_from_summary(session, uid, conversation_id, "en", 10_000)

    # The last answer here is not a summary being asked for, but any finished answer is taken.
    new_id = await service.db(start)
    new = await service.db(
        lambda s: repo.get_conversation(session=s, user_id=uid, conversation_id=new_id)
    )
    assert new.system_prompt.endswith("”):\nFirst answer.")
    assert new.system_prompt.startswith("Be brief.\n\nSummary of an earlier conversation")
    assert (new.provider, new.model) == ("siliconflow", "Qwen/Qwen3-8B")
    assert new.title.endswith("(continued)")
    assert await stored_path(service, uid, new_id) == []
    # A failed summary starts nothing.
    fake.enqueue(Reply(content="", error_after=0))
    async for _ in service.stream_turn(
        user_id=uid,
        conversation_id=conversation_id,
        action=NewMessage("sum up"),
        turn=replace(TURN, fit_context=True),
    ):
        pass
    with pytest.raises(SummaryMissing):
        await service.db(start)


def test_the_room_kept_for_the_answer_is_max_tokens_up_to_a_quarter_of_the_window() -> None:
    window = ContextLimit(131_072, "table")
    assert answer_room(0, window) == 0
    assert answer_room(2_000, window) == 2_000
    # max_tokens as large as the window refuses nothing by itself (providers clamp it).
    assert answer_room(131_072, window) == 32_768
    assert not would_exceed(1_000, answer_room(131_072, window), window)
