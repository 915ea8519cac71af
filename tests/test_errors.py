"""Errors are stored as data and worded only at the edge, in the reader's language."""

from __future__ import annotations

import json
import string

from sqlalchemy import text

from storage.models import Message
from tests.fake_openai import ErrorReply, FakeOpenAI
from tests.services import local_user, stored_path
from webapp.app import error_text
from webapp.app.chat import ChatService, TurnUpdate
from webapp.app.chat_request import NewMessage, TurnSettings
from webapp.app.error_text import user_message
from webapp.app.turn_runs import LENGTH_NOTE
from webapp.i18n import ZH
from webapp.provider.error_info import ErrorInfo, parse_error, stored_error
from webapp.provider.errors import ProviderError
from webapp.ui.render import View, render_path

TURN = TurnSettings(provider="siliconflow", model="Qwen/Qwen3-8B")
AUTH = ErrorInfo(
    "authentication", "SiliconFlow", 401, "Invalid token", key_env="SILICONFLOW_API_KEY"
)
OLD_ENGLISH = "SiliconFlow rejected the API key (401): check SILICONFLOW_API_KEY in .env."


def texts(view: View) -> list[str]:
    return [str(m["content"][0]["text"]) for m in view.messages]


async def ask(service: ChatService, user_id: int, question: str) -> TurnUpdate:
    last = None
    async for update in service.stream_turn(
        user_id=user_id, conversation_id=None, action=NewMessage(question), turn=TURN
    ):
        last = update
    assert last is not None
    return last


async def test_a_401_is_stored_as_data_and_shown_in_english_and_in_chinese(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await local_user(service)
    fake.enqueue(ErrorReply(401, '"Invalid token"'))
    update = await ask(service, uid, "Hi")
    assert update.state == "error" and update.error == AUTH

    def raw(session: object) -> str:
        row = session.execute(  # type: ignore[attr-defined]
            text("SELECT error FROM messages WHERE role = 'assistant'")
        ).one()
        return str(row[0])

    stored = await service.db(raw)
    assert json.loads(stored) == {
        "kind": "authentication",
        "provider": "SiliconFlow",
        "status": 401,
        "detail": "Invalid token",
        "partial": False,
        "retried": True,
        "key_env": "SILICONFLOW_API_KEY",
        "attempts": 1,
        "timeout_s": None,
        "number": None,
    }
    assert "rejected" not in stored  # data, not the English wording

    path = await stored_path(service, uid, update.conversation_id)
    assert texts(render_path(path, lang="en"))[:2] == [
        "Hi",
        "⚠ SiliconFlow rejected the API key (401): check SILICONFLOW_API_KEY in .env, or paste "
        "a key under Settings → API key.",
    ]
    assert texts(render_path(path, lang="zh"))[:2] == [
        "Hi",
        "⚠ SiliconFlow 拒绝了 API 密钥（401）：请检查 .env 中的 SILICONFLOW_API_KEY，或在"
        "“设置 → API 密钥”中粘贴密钥。",
    ]


def test_the_providers_own_words_stay_untranslated_and_quoted() -> None:
    limited = ErrorInfo("rate_limited", "jiekou.ai", 429, "TPM limit reached", partial=True)
    assert user_message(limited) == (
        "jiekou.ai is rate-limiting this key (429) and retries did not get through; wait a "
        "minute and try again, or lower the request rate. The provider said: “TPM limit "
        "reached”. The partial answer above is kept; use Retry to try again."
    )
    assert user_message(limited, "zh") == (
        "jiekou.ai 正在对这个密钥限流（429），重试也没有成功；请等一分钟再试，或降低请求频率。"
        "服务商的原话：“TPM limit reached”。上面的部分回答已保留；点“重试”再试一次。"
    )


def test_old_rows_with_english_text_still_render_as_they_are() -> None:
    path = [
        Message(role="user", content="Hi"),
        Message(role="assistant", content="", state="error", error=OLD_ENGLISH),
    ]
    assert texts(render_path(path, lang="zh"))[-1] == f"⚠ {OLD_ENGLISH}"
    assert texts(render_path(path, lang="en"))[-1] == f"⚠ {OLD_ENGLISH}"
    # Parley's own notes are stored as their English text, which is their key.
    assert user_message(LENGTH_NOTE, "zh") == ZH[LENGTH_NOTE]


def test_a_record_survives_the_round_trip_and_anything_else_stays_text() -> None:
    assert parse_error(stored_error(AUTH)) == AUTH
    assert stored_error("") is None and parse_error(None) is None
    for odd in (
        '{"no": "kind"}',
        '{"kind": "authentication", "status": "401"}',
        '{"kind": "authentication", "extra": 1}',
        '{"kind": "x"',
        "[1, 2]",
        "{curly prose}",
    ):
        assert parse_error(odd) == odd
        assert user_message(odd, "zh") == odd  # shown as it is


def test_every_error_wording_has_chinese_with_the_same_placeholders() -> None:
    english = [
        value
        for name, value in vars(error_text).items()
        if name.isupper() and isinstance(value, str)
    ] + list(error_text.TEMPLATES.values())
    assert len(english) > 20
    for template in english:
        assert template in ZH, template
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        assert fields == {f for _, f, _, _ in string.Formatter().parse(ZH[template]) if f}
    # Every kind of the error tree has its words (unknown kinds fall back to "could not read").
    classes, kinds = [ProviderError], set()
    while classes:
        cls = classes.pop()
        kinds.add(cls.kind)
        classes += cls.__subclasses__()
    worded = set(error_text.TEMPLATES) | {"server_error", "timeout", "stream_timeout"}
    assert kinds - worded == {"provider_error", "malformed_response"}
