"""A minimal client for Gradio's queue protocol (sse_v3), for load tests.

The browser does this: `POST /gradio_api/queue/join` with the event's inputs and a session hash,
then reads the session's Server-Sent Events at `GET /gradio_api/queue/data?session_hash=…` until
`process_completed`. Streamed outputs arrive as diffs against the previous value (`apply_diff`).
gradio_client is not used: it polls, which adds ~50 ms of granularity to every timing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx


class QueueError(Exception):
    """The event failed on the server (its message is Gradio's error text)."""


def new_session() -> str:
    return secrets.token_hex(6)


def apply_diff(value: Any, diff: list[Any]) -> Any:
    """Apply one output's streamed diff in place (Gradio's replace/append/add/delete edits)."""
    for action, path, edit in diff:
        if not path:
            value = edit if action == "replace" else value + edit
            continue
        target = value
        for key in path[:-1]:
            target = target[key]
        last = path[-1]
        if action == "replace":
            target[last] = edit
        elif action == "append":
            target[last] += edit
        elif action == "add":
            if isinstance(target, list):
                target.insert(int(last), edit)
            else:
                target[last] = edit
        elif action == "delete":
            del target[int(last) if isinstance(target, list) else last]
        else:
            raise QueueError(f"unknown diff action {action!r}")
    return value


@dataclass
class Event:
    """One queued event of a Gradio app, found by its function's name in `/config`."""

    fn_index: int
    trigger_id: int | None


def find_event(config: dict[str, Any], api_name: str, nth: int = 0) -> Event:
    found = [
        (i, dep) for i, dep in enumerate(config["dependencies"]) if dep.get("api_name") == api_name
    ]
    if len(found) <= nth:
        raise LookupError(f"no event named {api_name!r} in the app's /config")
    index, dep = found[nth]
    trigger = dep["targets"][0][0] if dep.get("targets") else None
    return Event(dep.get("id", index), trigger)


async def run(
    client: httpx.AsyncClient, base: str, session: str, event: Event, data: list[Any]
) -> AsyncIterator[list[Any]]:
    """Join the queue and yield the event's whole outputs after every update (diffs applied).

    The last item is the completed output. Raises QueueError when the event fails.
    """
    body = {
        "data": data,
        "event_data": None,
        "fn_index": event.fn_index,
        "trigger_id": event.trigger_id,
        "session_hash": session,
    }
    joined = await client.post(f"{base}gradio_api/queue/join", json=body)
    if joined.status_code != 200:
        raise QueueError(f"queue/join answered {joined.status_code}: {joined.text[:200]}")
    event_id = joined.json()["event_id"]
    outputs: list[Any] | None = None
    async with client.stream(
        "GET", f"{base}gradio_api/queue/data", params={"session_hash": session}
    ) as stream:
        async for line in stream.aiter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            kind = message.get("msg")
            if kind == "close_stream":
                break
            if message.get("event_id") != event_id:
                continue
            if kind == "process_generating":
                data_out = message["output"]["data"]
                if outputs is None:
                    outputs = list(data_out)
                else:
                    outputs = [
                        apply_diff(old, diff) for old, diff in zip(outputs, data_out, strict=False)
                    ]
                yield outputs
            elif kind == "process_completed":
                output = message.get("output") or {}
                if not message.get("success", True):
                    raise QueueError(str(output.get("error") or output)[:300])
                if output.get("data") is not None and outputs is None:
                    yield list(output["data"])
                return
            elif kind == "unexpected_error":
                raise QueueError(str(message.get("message"))[:300])
    raise QueueError("the event stream closed before the event completed")


async def call(
    client: httpx.AsyncClient, base: str, session: str, event: Event, data: list[Any]
) -> list[Any] | None:
    """Run an event to completion; return its last outputs."""
    last = None
    async for outputs in run(client, base, session, event, data):
        last = outputs
    return last


async def predict(
    client: httpx.AsyncClient, base: str, session: str, event: Event, data: list[Any]
) -> Any:
    """Run a `queue=False` event the way the browser does (`POST /gradio_api/run/predict`)."""
    body = {
        "data": data,
        "event_data": None,
        "fn_index": event.fn_index,
        "trigger_id": event.trigger_id,
        "session_hash": session,
    }
    answer = await client.post(f"{base}gradio_api/run/predict", json=body)
    if answer.status_code != 200:
        raise QueueError(f"run/predict answered {answer.status_code}: {answer.text[:200]}")
    return answer.json()


TextOf = Callable[[list[Any]], str]


def _figures(content: Any) -> bool:
    """True for Parley's figures line (`<small>…</small>` after the answer)."""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return isinstance(content, str) and content.startswith("<small>")


def chatbot_text(index: int) -> TextOf:
    """The text of the last assistant message of the Chatbot at output `index`."""

    def text(outputs: list[Any]) -> str:
        value = outputs[index]
        if isinstance(value, dict):  # a gr.update(...)
            value = value.get("value")
        if not isinstance(value, list):
            return ""
        for message in reversed(value):
            if not isinstance(message, dict) or message.get("role") != "assistant":
                continue
            if (message.get("metadata") or {}).get("title"):
                continue  # a Thinking or tool block, not the answer
            content = message.get("content")
            if _figures(content):
                continue  # the figures under a finished answer, not the answer
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
            if isinstance(content, dict):
                return str(content.get("text", ""))
            return ""
        return ""

    return text


def plain_text(index: int) -> TextOf:
    def text(outputs: list[Any]) -> str:
        value = outputs[index]
        return value if isinstance(value, str) else ""

    return text
