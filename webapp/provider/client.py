"""The wire to OpenAI-compatible providers: streaming POST, retries, model listing."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from webapp.config import ProviderConfig
from webapp.core.messages import Retrying, StreamEvent, StreamStarted
from webapp.provider.errors import (
    AuthenticationError,
    BadRequest,
    ConnectionFailed,
    GatewayTimeout,
    MalformedResponse,
    NotFoundError,
    PermissionDenied,
    ProviderError,
    RateLimited,
    RequestTimeout,
    ServerError,
    ServerOverloaded,
    StreamInterrupted,
    StreamTimeout,
    UpstreamStreamError,
    error_from_response,
    extract_detail,
    message_from_payload,
)
from webapp.provider.sse import DONE, ChunkAssembler, SSEDecoder, SSEMessage, loads_chunk

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "ConnectionFailed",
    "GatewayTimeout",
    "MalformedResponse",
    "NotFoundError",
    "PermissionDenied",
    "ProviderClient",
    "ProviderError",
    "RateLimited",
    "RequestTimeout",
    "RetryPolicy",
    "ServerError",
    "ServerOverloaded",
    "StreamInterrupted",
    "StreamTimeout",
    "UpstreamStreamError",
    "error_from_response",
    "extract_detail",
]

log = logging.getLogger(__name__)

ERROR_BODY_LIMIT = 64 * 1024
JSON_BODY_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, honouring Retry-After (capped)."""

    max_retries: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    retry_after_cap_s: float = 30.0
    jitter: bool = True
    sleep: Callable[[float], Awaitable[Any]] = field(default=asyncio.sleep)
    random: Callable[[], float] = field(default=random.random)

    def delay(self, retry_number: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number `retry_number` (1-based)."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.retry_after_cap_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry_number - 1))
        return ceiling * self.random() if self.jitter else ceiling


@dataclass(slots=True)
class _Tally:
    done: bool = False
    malformed: int = 0
    messages: int = 0  # SSE data messages received (any at all means the answer has begun)


def _decode(
    messages: list[SSEMessage], assembler: ChunkAssembler, tally: _Tally
) -> list[StreamEvent]:
    """Parse SSE messages as JSON chunks; skip and count malformed ones."""
    events: list[StreamEvent] = []
    tally.messages += len(messages)
    for message in messages:
        if message.data.strip() == DONE:
            tally.done = True
            continue
        try:
            chunk = loads_chunk(message.data)
        except ValueError:
            tally.malformed += 1
            continue
        events.extend(assembler.feed(chunk))
    return events


async def _lines(response: httpx.Response) -> AsyncIterator[str]:
    """The body's lines as SSE splits them (CRLF, LF or CR), split on bytes.

    httpx's aiter_lines decodes text and splits it in three generator layers per network read;
    at one token per chunk that was a third of the cost of reading a stream (bench/load.py).
    A line ending in a lone CR waits for the next read, which may bring its LF.
    """
    buffer = b""
    async for piece in response.aiter_bytes():
        buffer += piece
        lines = buffer.splitlines(keepends=True)
        buffer = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for line in lines:
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


CONTEXT_FIELDS = ("context_length", "max_model_len", "context_window", "max_context_length")
MODEL_ID_CHARS = 300


def context_length(item: dict[str, Any]) -> int | None:
    """A model's context window from its /models entry, if the server lists one: vLLM says
    max_model_len, OpenRouter and others context_length, llama.cpp meta.n_ctx_train."""
    meta = item.get("meta")
    candidates = [item.get(name) for name in CONTEXT_FIELDS]
    if isinstance(meta, dict):
        candidates.append(meta.get("n_ctx_train"))
    for value in candidates:
        if type(value) is int and 256 <= value <= 10_000_000:
            return value
    return None


class ProviderClient:
    """Streams chat completions from one provider and lists its models."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        config: ProviderConfig,
        *,
        retry: RetryPolicy | None = None,
        read_timeout_s: float = 120.0,
    ) -> None:
        self._http = http
        self.config = config
        self.retry = retry or RetryPolicy()
        self.read_timeout_s = read_timeout_s
        # Context windows a server's /models listing gave (vLLM, llama.cpp, OpenRouter, …).
        self.context_lengths: dict[str, int] = {}

    async def stream_chat(
        self, body: dict[str, Any], *, api_key: str = ""
    ) -> AsyncIterator[StreamEvent]:
        """POST a chat completion and yield events as they arrive; close the response on exit.

        With `"stream": false` in the body the whole completion arrives as one JSON object and
        is turned into the same events.
        """
        payload = self.prepare_body(body)
        headers = self._headers(api_key)
        headers["Accept"] = "text/event-stream" if payload["stream"] else "application/json"
        url = f"{self.config.base_url}/chat/completions"
        timeout = self._stream_timeout()
        attempt = 0
        while True:
            attempt += 1
            started = False
            tally = _Tally()
            try:
                async with self._http.stream(
                    "POST", url, json=payload, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code != 200:
                        raise await self._status_error(response)
                    started = True
                    yield StreamStarted(attempt=attempt)
                    async for event in self._events(response, tally):
                        yield event
                    return
            except ProviderError as err:
                if not self._may_retry(err, attempt, started, tally):
                    err.attempts = attempt
                    raise
                error = err
            except httpx.HTTPError as exc:
                mapped = self._transport_error(exc, started)
                if not self._may_retry(mapped, attempt, started, tally):
                    mapped.attempts = attempt
                    raise mapped from exc
                error = mapped
            delay = self.retry.delay(attempt, error.retry_after_s)
            yield Retrying(attempt=attempt + 1, delay_s=delay, reason=error.kind)
            await self.retry.sleep(delay)

    def _may_retry(self, error: ProviderError, attempt: int, started: bool, tally: _Tally) -> bool:
        """Retry only while nothing of the answer has arrived, within the limits.

        A response that started (200) but then sent no data at all before it went silent or
        broke is tried once more: nothing was shown, and such stalls are usually a stuck
        upstream worker. Once any data has arrived, the answer belongs to the user as it is.
        """
        if started:
            if tally.messages or not isinstance(error, StreamInterrupted):
                return False
            error.max_retries = 1
        elif not error.retryable:
            return False
        limit = self.retry.max_retries
        if error.max_retries is not None:
            limit = min(limit, error.max_retries)
        return attempt <= limit

    async def list_models(self, *, api_key: str = "") -> list[str]:
        """GET /models (with the provider's query) and return sorted unique model ids."""
        url = f"{self.config.base_url}/models"
        try:
            response = await self._http.get(
                url, params=list(self.config.models_params), headers=self._headers(api_key)
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, started=False) from exc
        if response.status_code != 200:
            raise error_from_response(
                self.config.label,
                response.status_code,
                response.text[:ERROR_BODY_LIMIT],
                response.headers,
                key_env=self.config.key_env,
            )
        try:
            payload = response.json()
        except ValueError:
            raise self._malformed(f"models list is not JSON: {response.text[:200]}") from None
        items = payload.get("data") if isinstance(payload, dict) else payload
        if not isinstance(items, list):
            raise self._malformed(f"models list has no data array: {response.text[:200]}")
        ids = {item.get("id") if isinstance(item, dict) else item for item in items}
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                length = context_length(item)
                if length:
                    self.context_lengths[item["id"][:MODEL_ID_CHARS]] = length
        return sorted(i for i in ids if isinstance(i, str) and i)

    def prepare_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """A copy of the body that streams (unless `stream` is false) and asks for usage."""
        payload = dict(body)
        payload["stream"] = payload.get("stream") is not False
        if payload["stream"]:
            payload.setdefault("stream_options", {"include_usage": True})
        else:
            payload.pop("stream_options", None)
        return payload

    def _headers(self, api_key: str) -> dict[str, str]:
        key = api_key.strip() or self.config.api_key.get().strip()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _stream_timeout(self) -> httpx.Timeout:
        base = self._http.timeout
        return httpx.Timeout(
            connect=base.connect, read=self.read_timeout_s, write=base.write, pool=base.pool
        )

    async def _status_error(self, response: httpx.Response) -> ProviderError:
        body = bytearray()
        try:
            async for piece in response.aiter_bytes():
                body.extend(piece)
                if len(body) >= ERROR_BODY_LIMIT:
                    break
        except httpx.HTTPError:
            pass  # the status alone still says what happened
        text = bytes(body[:ERROR_BODY_LIMIT]).decode("utf-8", errors="replace")
        return error_from_response(
            self.config.label,
            response.status_code,
            text,
            response.headers,
            key_env=self.config.key_env,
        )

    async def _events(self, response: httpx.Response, tally: _Tally) -> AsyncIterator[StreamEvent]:
        assembler = ChunkAssembler(self.config.label, self.config.key_env)
        if "json" in response.headers.get("content-type", "") and "event-stream" not in (
            response.headers.get("content-type", "")
        ):
            # The server ignored stream=true and sent one whole completion (or an error).
            for event in await self._whole_json(response, assembler):
                yield event
            return
        decoder = SSEDecoder()
        async for line in _lines(response):
            for event in _decode(decoder.feed(line), assembler, tally):
                yield event
        for event in _decode(decoder.flush(), assembler, tally):
            yield event
        malformed, done = tally.malformed, tally.done
        if malformed:
            log.warning("%s: skipped %d malformed SSE data lines", self.config.label, malformed)
        if not assembler.produced and (malformed or decoder.stray):
            raise self._garbage(decoder.stray, malformed)
        if not done and not assembler.finished_any:
            raise StreamInterrupted(
                self.config.label, self.config.key_env, detail="stream ended before [DONE]"
            )
        for event in assembler.finish():
            yield event

    async def _whole_json(
        self, response: httpx.Response, assembler: ChunkAssembler
    ) -> list[StreamEvent]:
        body = bytearray()
        async for piece in response.aiter_bytes():
            body.extend(piece)
            if len(body) > JSON_BODY_LIMIT:
                raise self._malformed("JSON response too large")
        try:
            payload = loads_chunk(bytes(body))
        except ValueError:
            raise self._malformed(bytes(body[:200]).decode("utf-8", "replace")) from None
        events = assembler.feed(payload) + assembler.finish()
        if not events:
            raise self._malformed(bytes(body[:200]).decode("utf-8", "replace"))
        return events

    def _garbage(self, stray: list[str], malformed: int) -> ProviderError:
        text = "\n".join(stray)
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        message = message_from_payload(payload) if isinstance(payload, dict) else ""
        if message:
            return UpstreamStreamError(self.config.label, self.config.key_env, detail=message)
        return self._malformed(f"{malformed} malformed data lines; {text[:200]}".strip())

    def _malformed(self, detail: str) -> MalformedResponse:
        return MalformedResponse(self.config.label, self.config.key_env, detail=detail)

    def _transport_error(self, exc: httpx.HTTPError, started: bool) -> ProviderError:
        label, key_env = self.config.label, self.config.key_env
        detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if started and isinstance(exc, httpx.ReadTimeout):
            return self._timed_out(StreamTimeout(label, key_env, detail=detail))
        if started:
            return StreamInterrupted(label, key_env, detail=detail)
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ConnectionFailed(label, key_env, detail=detail)
        if isinstance(exc, httpx.ReadTimeout):
            return self._timed_out(RequestTimeout(label, key_env, detail=detail))
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimeout(label, key_env, detail=detail)
        if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
            return ConnectionFailed(label, key_env, detail=detail)
        return ConnectionFailed(label, key_env, detail=detail, retryable=False)

    def _timed_out(self, error: ProviderError) -> ProviderError:
        """Note which limit ran out, so the message can name READ_TIMEOUT and its value."""
        error.timeout_s = self.read_timeout_s
        return error
