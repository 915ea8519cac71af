"""The live answer apart from the settled chat: a server-sent event stream per conversation.

While an answer streams, the page's Chatbot keeps the settled history (rendered once per turn)
plus a placeholder; the answer itself comes here as appended text, so what each update costs
(server CPU, bytes, the browser's work) depends on what is new, never on the earlier messages
or on the answer's length. Markdown blocks that can no longer change (a paragraph followed by
a blank line, a closed code fence) are rendered once on the server and sent as HTML; the
block still being written travels as plain text deltas. When the run ends the page's own
Gradio event renders the final answer as usual (math, highlighting, figures).

Rendering here is deliberately plain: CommonMark with raw HTML off (so a model's tags are
text), links only to http(s) and mailto, images as a short note (nothing is fetched).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from webapp.app.runs import Run, RunManager
from webapp.app.turn_runs import TurnUpdate
from webapp.i18n import t
from webapp.ui.render import TOOL_LABELS

LIVE_INTERVAL_S = 0.1  # frames a second per viewer: 10
LIVE_PREFIX = "/parley/live/"
LIVE_PATH = LIVE_PREFIX + "{conversation_id}"
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SAFE_LINK = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)
TOOL_TEXT_CHARS = 600  # a live tool block shows this much of the arguments and the result


def _renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = lambda url: bool(_SAFE_LINK.match(url.strip()))  # type: ignore[method-assign]

    def image(renderer: Any, tokens: Any, index: int, options: Any, env: Any) -> str:
        alt = "".join(child.content for child in tokens[index].children or [])
        return f'<span class="parley-live-image">🖼 {html.escape(alt or "image")}</span>'

    md.add_render_rule("image", image)
    return md


_MD = _renderer()


def render_block(text: str) -> str:
    """One settled Markdown block as HTML (links open in a new tab)."""
    html: str = _MD.render(text)
    return html.replace("<a href=", '<a target="_blank" rel="noopener noreferrer" href=')


@dataclass(slots=True)
class Blocks:
    """Splits growing Markdown into settled blocks and the tail still being written."""

    settled: int = 0  # characters already sent as blocks
    scanned: int = 0  # where the next complete line starts
    fence: str | None = None  # the open code fence's marker, if inside one

    def feed(self, text: str) -> list[str]:
        """The newly settled blocks of `text` (as Markdown), in order."""
        found: list[str] = []
        while True:
            end = text.find("\n", self.scanned)
            if end < 0:
                return found
            line = text[self.scanned : end]
            self.scanned = end + 1
            boundary = False
            marker = _FENCE.match(line)
            if self.fence is not None:
                if (
                    marker
                    and marker.group(1)[0] == self.fence[0]
                    and (len(marker.group(1)) >= len(self.fence))
                    and not line.strip(" `~")
                ):
                    self.fence, boundary = None, True
            elif marker:
                self.fence = marker.group(1)
            elif not line.strip():
                boundary = True
            if boundary:
                block = text[self.settled : self.scanned]
                self.settled = self.scanned
                if block.strip():
                    found.append(block)


@dataclass(slots=True)
class Segment:
    """What the viewer was sent of one round of one choice."""

    reasoning: int = 0
    blocks: Blocks = field(default_factory=Blocks)
    tail: str = ""
    tools: str = "[]"  # the tool list as last sent (JSON)


class LiveWriter:
    """Turns a run's snapshot into the events a viewer has not had yet."""

    def __init__(self, update: TurnUpdate, lang: str = "en") -> None:
        self.update = update
        self.lang = lang
        self.segments: dict[tuple[int, int], Segment] = {}
        self.started = False

    def frame(self, last: bool) -> bytes:
        events: list[dict[str, Any]] = []
        if not self.started:  # the words the page shows around the answer, in its language
            self.started = True
            events.append({"labels": {"thinking": t("Thinking", self.lang)}})
        progress = self.update.progress
        for index, past in enumerate(progress.rounds):
            self._segment(
                events,
                0,
                index,
                past.reasoning,
                past.content,
                [_tool(v, self.lang) for v in past.tools],
            )
        for choice_index, choice in enumerate(progress.choices[: progress.n]):
            segment = len(progress.rounds) if choice_index == 0 else 0
            tools = [_tool(v, self.lang) for v in progress.tools] if choice_index == 0 else []
            self._segment(events, choice_index, segment, choice.reasoning, choice.content, tools)
        if progress.retry_note and not any(c.content for c in progress.choices):
            events.append({"note": progress.retry_note})
        if last:
            events.append({"done": True, "state": self.update.state})
        return b"".join(
            b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\n\n" for e in events
        )

    def _segment(
        self,
        events: list[dict[str, Any]],
        lane: int,
        index: int,
        reasoning: str,
        content: str,
        tools: list[dict[str, Any]],
    ) -> None:
        event: dict[str, Any] = {}
        if (lane, index) not in self.segments and lane > 0:
            count = self.update.progress.n
            event["header"] = t("Choice {index} of {count}", self.lang).format(
                index=lane + 1, count=count
            )
        sent = self.segments.setdefault((lane, index), Segment())
        if len(reasoning) > sent.reasoning:
            event["reasoning"] = reasoning[sent.reasoning :]
            sent.reasoning = len(reasoning)
        blocks = sent.blocks.feed(content)
        tail = content[sent.blocks.settled :]
        if blocks:
            event["blocks"] = [render_block(block) for block in blocks]
            event["tail"] = tail
        elif tail != sent.tail:
            if tail.startswith(sent.tail):
                event["more"] = tail[len(sent.tail) :]
            else:
                event["tail"] = tail
        sent.tail = tail
        listed = json.dumps(tools, ensure_ascii=False)
        if listed != sent.tools:
            event["tools"] = tools
            sent.tools = listed
        if event:
            events.append({"lane": lane, "seg": index, **event})


def _tool(view: Any, lang: str) -> dict[str, str | None]:
    """One tool call as the live view shows it (its title as the chat's tool blocks have it)."""
    result = view.result.content if view.result is not None else None
    icon = "⚠" if view.status in ("error", "timeout") else "🛠"
    label = t(TOOL_LABELS.get(view.status, view.status), lang)
    item = {
        "title": f"{icon} {view.call.name or t('(unnamed tool)', lang)} · {label}",
        "arguments": view.call.arguments[:TOOL_TEXT_CHARS],
        "result": result[:TOOL_TEXT_CHARS] if result is not None else None,
    }
    if view.status == "awaiting_approval":
        item["hint"] = t("Approve or deny this call with the buttons under the chat.", lang)
    return item


class LiveFeed:
    """GET /parley/live/{conversation_id}: the live answer of one of the caller's chats."""

    def __init__(
        self, runs: RunManager, user_of: Callable[[Request], Awaitable[int | None]]
    ) -> None:
        self.runs = runs
        self.user_of = user_of

    async def endpoint(self, request: Request) -> Response:
        user_id = await self.user_of(request)
        if user_id is None:
            return Response("Sign in first.", status_code=401)
        conversation_id = str(request.path_params.get("conversation_id", ""))
        lang = request.query_params.get("lang", "en")
        runs = await self.runs.find(user_id, conversation_id, "chat")
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        if not runs:  # nothing streams there (or not for this user): say so and end
            done = b'data: {"done": true, "state": "none"}\n\n'
            return Response(done, media_type="text/event-stream", headers=headers)
        return StreamingResponse(
            self._events(runs[0], lang if lang in ("en", "zh") else "en"),
            media_type="text/event-stream",
            headers=headers,
        )

    async def _events(self, run: Run, lang: str) -> AsyncIterator[bytes]:
        writer = LiveWriter(run.snapshot, lang)
        frames = self.runs.watch([run], LIVE_INTERVAL_S)
        try:
            async for last in frames:
                piece = writer.frame(last)
                if piece:
                    yield piece
        finally:
            await frames.aclose()  # the page went away: the run goes on
