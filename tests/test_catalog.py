"""Model listing: live from the fake upstream, cached, with the built-in catalog as fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fake_openai import ErrorReply, FakeOpenAI
from webapp.app.error_text import model_list_note
from webapp.config import Settings, load_settings
from webapp.provider.catalog import ModelCatalog
from webapp.provider.client import ProviderClient
from webapp.provider.error_info import ErrorInfo


@pytest.fixture
async def setup(fake_openai: FakeOpenAI) -> AsyncIterator[tuple[ModelCatalog, Settings]]:
    settings = load_settings(
        {
            "SILICONFLOW_BASE_URL": fake_openai.base_url,
            "SILICONFLOW_API_KEY": "server-key",
            "JIEKOU_BASE_URL": fake_openai.base_url,
        },
        dotenv_path=None,
    )
    async with httpx.AsyncClient() as http:
        clients = {p.name: ProviderClient(http, p) for p in settings.providers}
        yield ModelCatalog({p.name: p for p in settings.providers}, clients), settings


async def test_live_list_is_used_and_cached(
    setup: tuple[ModelCatalog, Settings], fake_openai: FakeOpenAI
) -> None:
    catalog, _ = setup
    fake_openai.models = ["Qwen/Qwen3-8B", "deepseek-ai/DeepSeek-V3.2"]
    first = await catalog.models("siliconflow")
    assert first.live and first.models == ("Qwen/Qwen3-8B", "deepseek-ai/DeepSeek-V3.2")
    assert fake_openai.requests[-1]["query"] == {"type": "text", "sub_type": "chat"}
    fake_openai.models = ["changed/model"]
    assert (await catalog.models("siliconflow")).models == first.models  # cached
    assert len(fake_openai.requests) == 1
    refreshed = await catalog.models("siliconflow", refresh=True)
    assert refreshed.models == ("changed/model",)


async def test_failure_falls_back_to_the_built_in_catalog_and_says_why(
    setup: tuple[ModelCatalog, Settings], fake_openai: FakeOpenAI
) -> None:
    catalog, settings = setup
    fake_openai.models_error = ErrorReply(401, '"Invalid token"')
    listing = await catalog.models("siliconflow")
    assert not listing.live
    assert listing.models == settings.provider("siliconflow").catalog
    assert listing.error == ErrorInfo(
        "authentication",
        "SiliconFlow",
        401,
        "Invalid token",
        retried=False,
        key_env="SILICONFLOW_API_KEY",
    )
    note = model_list_note(listing, "SiliconFlow")
    assert "Could not list models" in note and "SILICONFLOW_API_KEY" in note
    assert model_list_note(listing, "SiliconFlow", "zh").startswith(
        "无法获取模型列表，显示内置列表。SiliconFlow 拒绝了 API 密钥（401）"
    )


async def test_without_any_key_the_catalog_is_shown_without_a_request(
    setup: tuple[ModelCatalog, Settings], fake_openai: FakeOpenAI
) -> None:
    catalog, settings = setup
    listing = await catalog.models("jiekou")
    assert listing.models == settings.provider("jiekou").catalog
    assert listing.missing_key and listing.error is None
    assert "No API key for jiekou.ai" in model_list_note(listing, "jiekou.ai")
    assert fake_openai.requests == []


async def test_a_pasted_key_lists_with_that_key(
    setup: tuple[ModelCatalog, Settings], fake_openai: FakeOpenAI
) -> None:
    catalog, _ = setup
    fake_openai.models = ["only/for-this-key"]
    listing = await catalog.models("jiekou", "user-key")
    assert listing.live and listing.models == ("only/for-this-key",)
    assert fake_openai.requests[-1]["headers"]["authorization"] == "Bearer user-key"
