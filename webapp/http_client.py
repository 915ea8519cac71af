"""The HTTP client Parley talks to providers with: httpx's API on aiohttp's transport.

Reading a stream of one-token SSE chunks with httpx's own transport (httpcore, h11 and an anyio
timeout scope per read) cost about 120 µs of CPU per chunk on this machine; the same httpx
client on `httpx-aiohttp`'s transport costs about 25 µs (50 concurrent streams, bench upstream;
see docs/performance.md). Everything else stays httpx: timeouts, errors, the retry policy and
the tolerant SSE decoder in webapp/provider.py. httpx-aiohttp is the transport the official
OpenAI SDK offers for the same reason (`openai[aiohttp]`).
"""

from __future__ import annotations

import httpx
from httpx_aiohttp import AiohttpTransport

from webapp.config import Settings


def provider_http(settings: Settings) -> httpx.AsyncClient:
    """One client for every provider request (streams and model lists)."""
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits),
        timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
        limits=limits,
    )
