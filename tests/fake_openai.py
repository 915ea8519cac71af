"""A fake OpenAI-compatible server speaking real SSE over real HTTP/1.1 on loopback.

It runs a raw ``asyncio`` server on its own event loop in a daemon thread, so tests control
every byte: CRLF or LF, comment pings, malformed lines, error objects mid-stream, dropping
the TCP connection, stalling until the client goes away.

Usage::

    with FakeOpenAI() as fake:                      # or fake = FakeOpenAI().start(); fake.stop()
        fake.enqueue(Reply(content="Hi", reasoning="hmm"))
        fake.enqueue(ErrorReply(429, '{"message":"TPM limit reached"}', {"Retry-After": "1"}))
        fake.enqueue(Reply(content="only for this model"), model="Qwen/Qwen3-8B")
        ... point a client at fake.base_url ("http://127.0.0.1:PORT/v1") ...
        fake.requests[-1]["json"]                   # what arrived
        fake.wait_for_disconnect()                  # a client closed a stream early

Routing: POST to any path ending in ``/chat/completions``; GET to any path ending in
``/models`` (returns ``fake.models`` or ``fake.models_error``); anything else is 404.
Replies come FIFO from the per-model queue (when the request's model has one), then the
global queue, then ``fake.default`` (``Reply(echo=True)``: "Echo: <last user text>").
A request with ``"stream": true`` gets SSE (``Transfer-Encoding: chunked``); otherwise
a plain JSON completion. Every response is sent with ``Connection: close``.

Counting rule for ``error_after`` / ``drop_after`` / ``stall_after``: N is the number of
``data:`` chunks written so far, the opening role chunk included (pings, malformed lines
and ``[DONE]`` are not counted).

Standalone: ``python -m tests.fake_openai --port 9999 [--delay 0.02 --first-delay 0.2
--chunk-chars 4 --chunk-words 0 --words 0]``.

Public API: Reply, ErrorReply, FakeOpenAI(host, port).start()/stop()/enqueue()/
wait_for_requests()/wait_for_disconnect(), attributes base_url, default, requests, models,
model_fields (extra /models fields, e.g. vLLM's max_model_len), models_error, disconnects,
active_streams.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}
REASONS |= {404: "Not Found", 422: "Unprocessable Entity", 429: "Too Many Requests"}
REASONS |= {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
REASONS |= {504: "Gateway Timeout"}


@dataclass
class Reply:
    """One scripted response to POST .../chat/completions."""

    content: str = "Hello from the fake server."
    reasoning: str = ""  # streamed before content as reasoning_content (choice 0 only)
    style: str = "siliconflow"  # siliconflow | openai | think_tags | no_usage
    chunk_chars: int = 4  # characters per content/reasoning/arguments chunk
    chunk_words: int = 0  # when > 0: words per chunk instead (benchmarks: ~1 token a chunk)
    first_delay: float = 0.0  # seconds before the first chunk
    delay: float = 0.0  # seconds between chunks
    finish_reason: str = "stop"  # becomes "tool_calls" when tool_calls are given and this is stop
    choices: list[str] | None = None  # n>1: content per choice, chunks interleaved
    tool_calls: list[dict[str, str]] | None = None  # [{"id", "name", "arguments"}]
    # first_only | repeated | null_later | empty_later | whole | interleaved | no_index
    tool_call_variant: str = "first_only"
    crlf: bool = False
    pings: bool = False  # ": ping" comments and blank keep-alives between chunks
    malformed_lines: int = 0  # 'data: {not json' lines injected after the first chunks
    error_after: int | None = None  # send {"error": {...}} after N chunks, then end
    drop_after: int | None = None  # abort the TCP connection after N chunks
    stall_after: int | None = None  # after N chunks (0: right after the headers), send nothing
    # until the client leaves
    prompt_tokens: int = 11
    echo: bool = False  # content = "Echo: " + the last user message's text
    error_message: str = "Upstream model crashed"  # used by error_after


@dataclass
class ErrorReply:
    """One scripted HTTP error response."""

    status: int
    body: str  # raw body text, e.g. '"Invalid token"'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def _split(text: str, chars: int, words: int) -> list[str]:
    if not text:
        return []
    if words > 0:
        parts = text.split(" ")
        tokens = [p + " " for p in parts[:-1]] + [parts[-1]]
        return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]
    size = max(1, chars)
    return [text[i : i + size] for i in range(0, len(text), size)]


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message in a request body."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(
                    p.get("text", "") for p in content if isinstance(p, dict) and "text" in p
                )
            return str(content or "")
    return ""


class _ChunkBuilder:
    """Builds the JSON chunks of one scripted streaming reply."""

    def __init__(self, reply: Reply, model: str, include_usage: bool) -> None:
        self.reply = reply
        self.model = model
        self.include_usage = include_usage
        self.completion = 0
        self.reasoning_tokens = 0

    def chunk(self, choices: list[dict[str, Any]], usage: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": choices,
        }
        if self.reply.style == "siliconflow" and usage:
            out["usage"] = self.usage()
        elif self.reply.style in ("openai", "think_tags") and self.include_usage:
            out["usage"] = None
        return out

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.reply.prompt_tokens,
            "completion_tokens": self.completion,
            "total_tokens": self.reply.prompt_tokens + self.completion,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    def delta(self, index: int, first: bool = False, **fields: Any) -> dict[str, Any]:
        sf = self.reply.style == "siliconflow"
        delta: dict[str, Any] = {}
        if first or sf:
            delta["role"] = "assistant"
        delta.update(fields)
        if sf:
            delta.setdefault("content", None)
            delta.setdefault("reasoning_content", None)
        return {"index": index, "delta": delta, "finish_reason": "" if sf else None}

    def build(self) -> Iterator[dict[str, Any]]:
        r = self.reply
        contents = r.choices if r.choices else [r.content]
        think = r.style == "think_tags" and r.reasoning
        for index in range(len(contents)):
            yield self.chunk([self.delta(index, first=True, content="")])
        if r.reasoning and not think:
            for piece in _split(r.reasoning, r.chunk_chars, r.chunk_words):
                self.completion += 1
                self.reasoning_tokens += 1
                yield self.chunk([self.delta(0, reasoning_content=piece)])
        texts = [f"<think>{r.reasoning}</think>\n\n{contents[0]}" if think else contents[0]]
        pieces = [_split(t, r.chunk_chars, r.chunk_words) for t in texts + contents[1:]]
        for step in range(max((len(p) for p in pieces), default=0)):
            for index, parts in enumerate(pieces):
                if step < len(parts):
                    self.completion += 1
                    yield self.chunk([self.delta(index, content=parts[step])])
        if r.tool_calls:
            yield from self.tool_chunks(r.tool_calls)
        reason = r.finish_reason
        if r.tool_calls and reason == "stop":
            reason = "tool_calls"
        for index in range(len(contents)):
            final = self.delta(index)
            final["delta"] = {"content": ""} if r.style == "siliconflow" else {}
            final["finish_reason"] = reason
            yield self.chunk([final])
        if r.style in ("openai", "think_tags") and self.include_usage:
            yield self.chunk([], usage=False) | {"usage": self.usage()}

    def tool_chunks(self, calls: list[dict[str, str]]) -> Iterator[dict[str, Any]]:
        variant = self.reply.tool_call_variant
        per_call: list[list[dict[str, Any]]] = []
        for index, call in enumerate(calls):
            cid, name, args = call.get("id", ""), call["name"], call.get("arguments", "")
            head = {"index": index, "id": cid, "type": "function"}
            if variant in ("whole", "no_index"):
                piece = head | {"function": {"name": name, "arguments": args}}
                if variant == "no_index":
                    del piece["index"]
                per_call.append([piece])
                continue
            fragments = _split(args, self.reply.chunk_chars, 0) or [""]
            pieces = [head | {"function": {"name": name, "arguments": ""}}]
            for fragment in fragments:
                if variant == "repeated":
                    piece = head | {"function": {"name": name, "arguments": fragment}}
                elif variant == "null_later":
                    piece = {"index": index, "id": None, "type": None}
                    piece["function"] = {"name": None, "arguments": fragment}
                elif variant == "empty_later":
                    piece = {
                        "index": index,
                        "id": "",
                        "function": {"name": "", "arguments": fragment},
                    }
                else:  # first_only, interleaved
                    piece = {"index": index, "function": {"arguments": fragment}}
                pieces.append(piece)
            per_call.append(pieces)
        if variant == "interleaved":
            order = [
                p[step]
                for step in range(max(map(len, per_call)))
                for p in per_call
                if step < len(p)
            ]
        else:
            order = [piece for pieces in per_call for piece in pieces]
        for piece in order:
            self.completion += 1
            yield self.chunk([self.delta(0, tool_calls=[piece])])


class FakeOpenAI:
    """The fake server; thread-safe to script and inspect from tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.default = Reply(echo=True)
        self.models: list[str] = ["fake/model-a", "fake/model-b"]
        self.models_error: ErrorReply | None = None
        self.model_fields: dict[str, dict[str, Any]] = {}  # extra /models fields per model id
        self.requests: list[dict[str, Any]] = []
        self._queue: deque[Reply | ErrorReply] = deque()
        self._model_queues: dict[str, deque[Reply | ErrorReply]] = {}
        self._cond = threading.Condition()
        self._disconnects = 0
        self._active = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def disconnects(self) -> int:
        """Streams the client closed before the server finished them."""
        with self._cond:
            return self._disconnects

    @property
    def active_streams(self) -> int:
        """Streams being written right now."""
        with self._cond:
            return self._active

    def start(self) -> FakeOpenAI:
        """Start serving in a daemon thread; returns self once the port is bound."""
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # surfaced to start()
                failure.append(exc)
                ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close every connection and stop the server thread."""
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def enqueue(self, *replies: Reply | ErrorReply, model: str | None = None) -> None:
        """Queue replies FIFO, globally or for one model (checked first)."""
        with self._cond:
            if model is None:
                self._queue.extend(replies)
            else:
                self._model_queues.setdefault(model, deque()).extend(replies)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least `count` requests have arrived."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= count, timeout)

    def wait_for_disconnect(self, timeout: float = 5.0, count: int = 1) -> bool:
        """Block until the client has closed at least `count` streams early."""
        with self._cond:
            return self._cond.wait_for(lambda: self._disconnects >= count, timeout)

    # -- server side (runs on the server's own loop) --

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._on_connection, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        raw = await reader.readexactly(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        url = urlsplit(target)
        record = {"path": url.path, "method": method, "headers": headers, "json": body}
        record["query"] = dict(parse_qsl(url.query))
        record["received_at"] = time.perf_counter()  # same clock as a benchmark in-process
        with self._cond:
            self.requests.append(record)
            self._cond.notify_all()
        if method == "POST" and url.path.endswith("/chat/completions"):
            await self._chat(reader, writer, body if isinstance(body, dict) else {})
        elif method == "GET" and url.path.endswith("/models"):
            await self._models(writer)
        else:
            await self._send(writer, 404, "404 page not found", "text/plain")

    def _next_reply(self, body: dict[str, Any]) -> Reply | ErrorReply:
        model = body.get("model")
        with self._cond:
            queue = self._model_queues.get(model) if isinstance(model, str) else None
            if queue:
                return queue.popleft()
            if self._queue:
                return self._queue.popleft()
            reply = self.default
        if reply.echo:
            reply = replace(reply, content="Echo: " + last_user_text(body), echo=False)
        return reply

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: str,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode()
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        head += [f"Content-Type: {content_type}", f"Content-Length: {len(data)}"]
        head += ["Connection: close"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()

    async def _models(self, writer: asyncio.StreamWriter) -> None:
        error = self.models_error
        if error is not None:
            await self._send(writer, error.status, error.body, headers=error.headers)
            return
        data = [
            {
                "id": m,
                "object": "model",
                "created": 0,
                "owned_by": "fake",
                **self.model_fields.get(m, {}),
            }
            for m in self.models
        ]
        await self._send(writer, 200, json.dumps({"object": "list", "data": data}))

    async def _chat(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: dict[str, Any]
    ) -> None:
        reply = self._next_reply(body)
        model = str(body.get("model") or "fake/model-a")
        if isinstance(reply, ErrorReply):
            if reply.delay:
                await asyncio.sleep(reply.delay)
            await self._send(writer, reply.status, reply.body, headers=reply.headers)
            return
        if not body.get("stream"):
            await self._send(writer, 200, json.dumps(_completion(reply, model)))
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        with self._cond:
            self._active += 1
        finished = False  # cancelled mid-stream (the server is closing): counts as a disconnect
        try:
            finished = await self._stream(reader, writer, reply, model, include_usage)
        finally:
            with self._cond:
                self._active -= 1
                if not finished:
                    self._disconnects += 1
                self._cond.notify_all()

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        reply: Reply,
        model: str,
        include_usage: bool,
    ) -> bool:
        """Write the SSE reply; False when the client went away first."""
        eol = "\r\n" if reply.crlf else "\n"
        gone = asyncio.ensure_future(_until_eof(reader))
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        head += "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"

        async def emit(text: str) -> bool:
            if gone.done():
                return False
            data = text.encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            try:
                await writer.drain()
            except ConnectionError:
                return False
            return True

        async def pause(seconds: float) -> bool:
            if seconds > 0:
                await asyncio.wait({gone}, timeout=seconds)
            return not gone.done()

        try:
            writer.write(head.encode())
            await writer.drain()
            if not await pause(reply.first_delay):
                return False
            if reply.stall_after == 0:
                await gone
                return False
            malformed = reply.malformed_lines
            for count, chunk in enumerate(_ChunkBuilder(reply, model, include_usage).build(), 1):
                if count > 1 and not await pause(reply.delay):
                    return False
                if not await emit(f"data: {json.dumps(chunk)}{eol}{eol}"):
                    return False
                if reply.pings and not await emit(f": ping{eol}{eol}: keep-alive{eol}{eol}"):
                    return False
                if malformed > 0:
                    malformed -= 1
                    if not await emit(f"data: {{not json{eol}{eol}"):
                        return False
                if count == reply.error_after:
                    error = {"message": reply.error_message, "type": "internal_error"}
                    await emit(f"data: {json.dumps({'error': error})}{eol}{eol}")
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return True
                if count == reply.drop_after:
                    writer.transport.abort()
                    return True
                if count == reply.stall_after:
                    await gone
                    return False
            if not await emit(f"data: [DONE]{eol}{eol}"):
                return False
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        except ConnectionError:
            return False
        finally:
            gone.cancel()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Return when the client closes its side (EOF or reset)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    """A non-streaming chat.completion for a reply."""
    contents = reply.choices or [reply.content]
    choices = []
    for index, content in enumerate(contents):
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reply.reasoning and index == 0:
            message["reasoning_content"] = reply.reasoning
        reason = reply.finish_reason
        if reply.tool_calls and index == 0:
            message["tool_calls"] = [
                {
                    "id": c.get("id", ""),
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c.get("arguments", "")},
                }
                for c in reply.tool_calls
            ]
            reason = "tool_calls" if reason == "stop" else reason
        choices.append({"index": index, "message": message, "finish_reason": reason})
    completion = sum(len(_split(c, reply.chunk_chars, reply.chunk_words)) for c in contents)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": reply.prompt_tokens + completion,
        },
    }


def main(argv: list[str] | None = None) -> None:
    """Run the fake server in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server (SSE)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--first-delay", type=float, default=0.0, help="seconds to first chunk")
    parser.add_argument("--chunk-chars", type=int, default=4)
    parser.add_argument("--chunk-words", type=int, default=0)
    parser.add_argument("--words", type=int, default=0, help="answer N lorem words, not echo")
    parser.add_argument("--style", default="siliconflow")
    args = parser.parse_args(argv)
    fake = FakeOpenAI(args.host, args.port)
    fake.default = Reply(
        echo=args.words <= 0,
        content=" ".join(f"word{i}" for i in range(args.words)),
        delay=args.delay,
        first_delay=args.first_delay,
        chunk_chars=args.chunk_chars,
        chunk_words=args.chunk_words,
        style=args.style,
    )
    with fake:
        print(f"fake OpenAI server at {fake.base_url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
