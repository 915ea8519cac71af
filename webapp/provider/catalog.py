"""Model lists per provider: live from GET /models, cached; the built-in catalog as fallback."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from webapp.config import ProviderConfig
from webapp.provider.client import ProviderError
from webapp.provider.error_info import ErrorInfo

CACHE_TTL_S = 600.0
FAILURE_TTL_S = 30.0  # retry a failed listing sooner


class ModelLister(Protocol):
    async def list_models(self, *, api_key: str = "") -> list[str]: ...


@dataclass(frozen=True, slots=True)
class ModelList:
    """The models to offer, and why they came from the fallback (worded at the UI edge)."""

    models: tuple[str, ...]
    live: bool
    missing_key: bool = False  # no key to ask the provider with
    error: ErrorInfo | None = None  # how asking the provider failed


class ModelCatalog:
    """Caches each provider's model list (per key, so a pasted key sees its own models)."""

    def __init__(self, providers: Mapping[str, ProviderConfig], clients: Mapping[str, ModelLister]):
        self._providers = providers
        self._clients = clients
        self._cache: dict[tuple[str, str], tuple[float, ModelList]] = {}
        self._lock = asyncio.Lock()

    async def models(self, provider: str, api_key: str = "", *, refresh: bool = False) -> ModelList:
        config = self._providers[provider]
        key = api_key or config.api_key.get()
        cache_key = (provider, hashlib.sha256(key.encode()).hexdigest()[:16])
        cached = self._cache.get(cache_key)
        ttl = CACHE_TTL_S if cached and cached[1].live else FAILURE_TTL_S
        if cached and not refresh and time.monotonic() - cached[0] < ttl:
            return cached[1]
        if not key and config.kind != "openai":
            return ModelList(config.catalog, live=False, missing_key=True)
        try:
            live = await self._clients[provider].list_models(api_key=key)
        except ProviderError as exc:
            result = ModelList(config.catalog, live=False, error=ErrorInfo.of(exc, retried=False))
        else:
            result = ModelList(tuple(live) or config.catalog, live=bool(live))
        async with self._lock:
            self._cache[cache_key] = (time.monotonic(), result)
        return result
