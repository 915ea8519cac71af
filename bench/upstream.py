"""The benchmark's upstream: an OpenAI-compatible streaming server with an exact, cheap pace.

Run: .venv/bin/python -m bench.upstream --port 9100   (first token 200 ms, 50 tokens/s, 300)

Every answer is `--tokens` words, one word per SSE chunk. Chunk k leaves at
request + first_token + k / rate on an absolute schedule, so a busy moment does not stretch the
stream (sleep-per-chunk servers drift). Chunks are pre-encoded and the server is raw asyncio,
so the upstream costs little CPU next to the systems being measured. It runs in a process of
its own: its CPU and memory are never counted as anyone else's.

The chunk shape is SiliconFlow's (NOTES.md): `choices[0].delta.content`, then a last chunk with
`finish_reason` and `usage`, then `data: [DONE]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time

WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "judge",
    "boxing",
    "matches",
    "near",
    "an",
    "old",
    "stone",
    "bridge",
)


ARRIVALS = os.environ.get("BENCH_ARRIVALS", "")  # a file to append request times to


class Workload:
    """What every answer looks like and how fast it comes."""

    def __init__(
        self, first_token_s: float = 0.2, tokens_per_s: float = 50.0, tokens: int = 300
    ) -> None:
        self.first_token_s = first_token_s
        self.interval_s = 1.0 / tokens_per_s
        self.tokens = tokens

    def chunks(self, model: str) -> list[bytes]:
        head = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
        }
        out = []
        for k in range(self.tokens):
            word = WORDS[k % len(WORDS)]
            delta = {"content": word if k == 0 else " " + word}
            if k == 0:
                delta["role"] = "assistant"
            body = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            out.append(b"data: " + json.dumps(body).encode() + b"\n\n")
        last = {
            **head,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 20,
                "completion_tokens": self.tokens,
                "total_tokens": 20 + self.tokens,
            },
        }
        out[-1] += b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n"
        return out


class Upstream:
    def __init__(self, workload: Workload, models: tuple[str, ...] = ("bench/model",)) -> None:
        self.workload = workload
        self.models = models
        self._chunks = {model: workload.chunks(model) for model in models}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request on a keep-alive connection; False when the client is gone."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        received = time.monotonic()
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip() or 0)
        raw = await reader.readexactly(length) if length else b""
        path = target.split("?", 1)[0]
        if method == "GET" and path.endswith("/models"):
            data = [{"id": m, "object": "model", "owned_by": "bench"} for m in self.models]
            self._plain(writer, 200, json.dumps({"object": "list", "data": data}).encode())
        elif method == "POST" and path.endswith("/chat/completions"):
            body = json.loads(raw or b"{}")
            if ARRIVALS:
                with open(ARRIVALS, "a") as log:
                    log.write(f"{received:.6f}\n")
            model = body.get("model") if body.get("model") in self._chunks else self.models[0]
            if body.get("stream") is False:
                self._plain(writer, 200, self._whole(model))
            else:
                await self._stream(writer, self._chunks[model], received)
        else:
            self._plain(writer, 404, b"404 page not found")
        await writer.drain()
        return True

    def _whole(self, model: str) -> bytes:
        text = " ".join(WORDS[k % len(WORDS)] for k in range(self.workload.tokens))
        return json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": 20,
                    "completion_tokens": self.workload.tokens,
                    "total_tokens": 20 + self.workload.tokens,
                },
            }
        ).encode()

    @staticmethod
    def _plain(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )

    async def _stream(
        self, writer: asyncio.StreamWriter, chunks: list[bytes], received: float
    ) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        start = received + self.workload.first_token_s
        for k, chunk in enumerate(chunks):
            wait = start + k * self.workload.interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        writer.write(b"0\r\n\r\n")


async def serve(port: int, workload: Workload) -> None:
    upstream = Upstream(workload)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=1024)
    print(f"bench upstream at http://127.0.0.1:{port}/v1", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--first-token", type=float, default=0.2, help="seconds")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second")
    parser.add_argument("--tokens", type=int, default=300)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, Workload(args.first_token, args.rate, args.tokens)))


if __name__ == "__main__":
    main()
