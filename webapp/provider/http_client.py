"""The HTTP client Parley talks to providers with: httpx's API on aiohttp's transport.

Reading a stream of one-token SSE chunks with httpx's own transport (httpcore, h11 and an anyio
timeout scope per read) cost about 120 µs of CPU per chunk on this machine; the same httpx
client on `httpx-aiohttp`'s transport costs about 25 µs (50 concurrent streams, bench upstream;
see docs/performance.md). Everything else stays httpx: timeouts, errors, the retry policy and
the tolerant SSE decoder in webapp/provider/client.py. httpx-aiohttp is the transport the official
OpenAI SDK offers for the same reason (`openai[aiohttp]`).
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from webapp.config import Settings


class PerLoopTransport(AiohttpTransport):
    """aiohttp's transport with one session per event loop (an aiohttp session belongs to the
    loop that made it; the app has one loop, but tests and tools may call from another)."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            self.client = None
            session = self._sessions[loop] = self.get_client()
        self.client = session
        return await super().handle_async_request(request)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()


def provider_http(settings: Settings) -> httpx.AsyncClient:
    """One client for every provider request (streams and model lists)."""
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    return httpx.AsyncClient(
        transport=PerLoopTransport(limits),
        timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
        limits=limits,
    )
