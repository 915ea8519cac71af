"""Personal API keys at the web edge: who a Bearer key belongs to, cached for a few seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlmodel import Session

from storage import api_keys as store
from storage.api_keys import KeyOwner, key_hash
from storage.db import unit_of_work

CACHE_S = 10.0  # a revoked key stops working here at once, on other instances within this
MISS_CACHE_S = 2.0  # unknown keys are remembered briefly, so guessing costs a lookup each
CACHE_MAX = 10_000


class ApiKeyAuth:
    """Looks keys up by their hash (a database read at most every CACHE_S per key)."""

    def __init__(
        self, session_factory: Callable[[], Session], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._cache: dict[str, tuple[float, KeyOwner | None]] = {}

    async def owner(self, secret: str) -> KeyOwner | None:
        """The owner of a working key, or None."""
        digest = key_hash(secret)
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and now < hit[0]:
            return hit[1]

        def load() -> KeyOwner | None:
            with unit_of_work(self._session_factory) as session:
                return store.owner_of(session=session, secret=secret)

        owner = await asyncio.to_thread(load)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = (now + (CACHE_S if owner else MISS_CACHE_S), owner)
        return owner

    def forget(self, key_id: str) -> None:
        """Drop a revoked key from the cache."""
        for digest, (_, owner) in list(self._cache.items()):
            if owner is not None and owner.key_id == key_id:
                del self._cache[digest]
