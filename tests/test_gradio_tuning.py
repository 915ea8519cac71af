"""Parley's tuning of Gradio internals (webapp/gradio_tuning.py): each one is still in effect
on this Gradio version and gives the same results as Gradio's own code path."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import gradio as gr
import httpx
import pytest
from gradio import state_holder

from tests.conftest import RunningApp, start_app
from webapp import gradio_tuning
from webapp.config import ConfigError
from webapp.ui.render import View, settled

GradioSessionState = gradio_tuning.LightSessionState.__bases__[0]  # Gradio's own class


@pytest.fixture(autouse=True)
def tuned() -> Iterator[gradio_tuning.Applied]:
    """Each test here runs with the process-wide patches on, and gives them back after."""
    applied = gradio_tuning.Applied.apply()
    try:
        yield applied
    finally:
        applied.undo()


def small_demo() -> tuple[gr.Blocks, Any, Any, Any]:
    with gr.Blocks() as demo:
        box = gr.Textbox(value="typed", label="Box")
        panel = gr.Markdown("panel")
        chat = gr.Chatbot()
        state = gr.State()
        box.submit(lambda: None, None, [chat, box, panel, state])
    return demo, box, panel, chat


def test_a_new_session_no_longer_copies_every_component_config() -> None:
    demo, *_ = small_demo()
    original = GradioSessionState(demo)
    light = gradio_tuning.LightSessionState(demo)
    assert len(original.config_values) >= 4  # Gradio's own: one config per block, up front
    assert light.config_values == {}
    assert set(vars(light)) == set(vars(original))  # same attributes: nothing else is skipped


def test_light_sessions_are_the_ones_the_running_app_makes(sqlite_app: RunningApp) -> None:
    assert state_holder.SessionState is gradio_tuning.LightSessionState
    sqlite_app.client().predict("Hi", "", "", "{}", api_name="/chat")
    holder = sqlite_app.parley.demo.state_holder
    assert holder.session_data  # the call made a session ...
    assert all(isinstance(s, gradio_tuning.LightSessionState) for s in holder.session_data.values())
    # ... which holds configs only for the blocks the event touched, not for all ~200.
    blocks = len(sqlite_app.parley.demo.blocks)
    assert all(len(s.config_values) < 20 < blocks for s in holder.session_data.values())


async def test_a_skipped_output_is_not_rebuilt() -> None:
    demo, box, panel, chat = small_demo()
    block_fn = demo.fns[0]
    predictions = [[{"role": "user", "content": "hi"}], gr.skip(), gr.skip(), gr.skip()]
    gradio_own = blocks_original_postprocess()
    session = GradioSessionState(demo)
    await gradio_own(demo, block_fn, list(predictions), session)
    assert session.state_data.get(box._id) is not None or box._id in session.config_values
    light = gradio_tuning.LightSessionState(demo)
    tuned = await demo.postprocess_data(block_fn, list(predictions), light)
    assert tuned[1] == tuned[2] == {"__type__": "update"}
    assert box._id not in light.config_values and panel._id not in light.config_values
    assert tuned[0][0]["role"] == "user"


async def test_gradio_would_rebuild_a_skipped_component_without_the_tuning() -> None:
    """The cost being avoided exists: Gradio's own postprocess_data builds a skipped block
    anew, a whole component per skip (so this fails once a Gradio upgrade stops doing it)."""
    demo, box, panel, _ = small_demo()
    session = GradioSessionState(demo)
    predictions = [[], gr.skip(), gr.skip(), gr.skip()]
    await blocks_original_postprocess()(demo, demo.fns[0], predictions, session)
    for block in (box, panel):
        rebuilt = session[block._id]
        assert type(rebuilt) is type(block) and rebuilt is not block


def blocks_original_postprocess() -> Any:
    closure = gr.Blocks.postprocess_data.__closure__ or ()
    for cell in closure:
        if callable(cell.cell_contents) and cell.cell_contents.__name__ == "postprocess_data":
            return cell.cell_contents
    raise AssertionError("Gradio's own postprocess_data is not wrapped")


async def test_whole_skip_and_mixed_updates_match_gradio() -> None:
    demo, box, panel, chat = small_demo()
    block_fn = demo.fns[0]
    gradio_own = blocks_original_postprocess()
    cases = [
        lambda: gr.skip(),  # Gradio mutates updates: a fresh copy for each call
        lambda: [gr.skip(), gr.update(value="new", visible=True), gr.skip(), 5],
        lambda: [[], "text", gr.update(visible=False), gr.skip()],
    ]
    for make in cases:
        expected = await gradio_own(demo, block_fn, make(), GradioSessionState(demo))
        tuned = await demo.postprocess_data(block_fn, make(), GradioSessionState(demo))
        assert tuned == expected


def test_settled_messages_show_exactly_what_the_chatbot_would() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "  indented\n\tquestion"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "answer"}],
            "metadata": {"title": "Thinking", "status": "done"},
        },
        {"role": "assistant", "content": "bare string\n    dedented by Gradio"},
    ]
    chatbot = gr.Chatbot(render=False)
    view = settled(View(messages, ["q", "a", "b"]))
    assert view.message_ids == ["q", "a", "b"]
    assert (
        chatbot.postprocess(view.messages).model_dump()
        == chatbot.postprocess(messages).model_dump()
    )
    # ... and live dicts appended after them go through Gradio's conversion as before.
    live = [*view.messages, {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]
    assert (
        chatbot.postprocess(live).model_dump()
        == chatbot.postprocess([*messages, live[-1]]).model_dump()
    )


async def test_component_conversions_run_inline_and_other_work_in_threads() -> None:
    import threading

    from gradio import blocks

    gradio_tuning.inline_conversions()
    shim = blocks.anyio
    assert isinstance(shim, gradio_tuning._InlineConversions)
    import types

    box = gr.Textbox(render=False)
    main = threading.get_ident()
    seen: list[int] = []

    def postprocess(self: gr.Textbox, value: str) -> str:
        seen.append(threading.get_ident())
        return value

    # A component's own postprocess (a bound method of that name) runs on the loop's thread ...
    converter = types.MethodType(postprocess, box)
    assert await shim.to_thread.run_sync(converter, "v") == "v"
    assert seen == [main]
    # ... and any other function still goes to a worker thread.
    await shim.to_thread.run_sync(lambda: seen.append(threading.get_ident()))
    assert len(seen) == 2 and seen[-1] != main


def test_the_queue_polls_less_and_sends_positions_on_a_timer(sqlite_app: RunningApp) -> None:
    queue = sqlite_app.parley.demo._queue
    assert queue.sleep_when_free == gradio_tuning.QUEUE_POLL_S
    assert queue.progress_update_sleep_when_free == gradio_tuning.PROGRESS_POLL_S
    assert queue.live_updates is False  # status_update_rate=2: no O(n²) estimate broadcasts


def test_login_check_runs_on_the_loop_and_still_refuses_strangers(
    fake_openai: Any, tmp_path: Any
) -> None:
    from tests.conftest import start_app
    from webapp.web import _gradio_apps

    app = start_app(fake_openai, tmp_path / "p.db", AUTH_MODE="header")
    try:
        gradio_apps = _gradio_apps(app.server.server.config.app)
        assert len(gradio_apps) == 2  # the chat and the share page
        for gradio_app in gradio_apps:
            overridden = list(gradio_app.dependency_overrides)
            assert [check.__name__ for check in overridden] == ["login_check"]
        # Without the trusted header the check still answers 401 ...
        refused = httpx.get(app.url + "gradio_api/queue/data", params={"session_hash": "x"})
        assert refused.status_code == 401
        # ... and with it the request gets through.
        allowed = httpx.get(app.url + "config", headers={"X-Forwarded-User": "alice"})
        assert allowed.status_code == 200
    finally:
        app.close()


MATPLOTLIB_CHECK = """
import importlib.util, sys
installed = importlib.util.find_spec("matplotlib") is not None
from webapp import gradio_tuning
gradio_tuning.no_matplotlib_retries()
try:
    import matplotlib
    print("installed" if installed else "imported-without-being-installed")
except ImportError:
    print("fails-fast" if sys.modules.get("matplotlib", 0) is None else "searched-again")
"""


def _matplotlib_check(tmp_path: Path, *, installed: bool) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    if installed:  # a package of that name on the path stands in for the real one
        (tmp_path / "matplotlib").mkdir()
        (tmp_path / "matplotlib" / "__init__.py").write_text("")
        env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", MATPLOTLIB_CHECK],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout.strip()


def test_matplotlib_is_marked_missing_only_where_it_is_missing(tmp_path: Path) -> None:
    """Without matplotlib, `import matplotlib` fails at once (no sys.path search again);
    with it, the tuning leaves it alone."""
    assert _matplotlib_check(tmp_path, installed=True) == "installed"
    if importlib.util.find_spec("matplotlib") is None:  # as in CI: the real case
        assert _matplotlib_check(tmp_path, installed=False) == "fails-fast"


def test_long_chats_are_updated_less_often_but_never_rarely() -> None:
    from webapp.app.chat import MAX_UPDATE_INTERVAL_S, UPDATE_INTERVAL_S, update_interval
    from webapp.ui.handlers.events import INTERVAL_PER_MESSAGE_S

    assert update_interval(0, 0.0) == UPDATE_INTERVAL_S == update_interval(500, 0.0)  # the API
    assert update_interval(1, INTERVAL_PER_MESSAGE_S) < 0.11  # a new chat: ~10 per second
    assert 0.25 < update_interval(80, INTERVAL_PER_MESSAGE_S) < MAX_UPDATE_INTERVAL_S  # 40 turns
    assert update_interval(10_000, INTERVAL_PER_MESSAGE_S) == MAX_UPDATE_INTERVAL_S == 0.4


def gradio_is_its_own() -> bool:
    """No process-wide patch in effect: Gradio's own session class, postprocess and anyio."""
    blocks_module: Any = sys.modules["gradio.blocks"]
    return (
        state_holder.SessionState is GradioSessionState
        and not getattr(gr.Blocks.postprocess_data, "_parley_cheap_skips", False)
        and blocks_module.anyio is anyio
    )


def test_the_last_undo_gives_gradio_its_own_code_back() -> None:
    with gradio_tuning.Applied.suspended():  # whatever other apps of this process hold
        assert gradio_is_its_own()
        first = gradio_tuning.Applied.apply()
        second = gradio_tuning.Applied.apply()  # another app built in the same process
        assert not gradio_is_its_own()
        first.undo()
        assert not gradio_is_its_own(), "the second app still holds the patches"
        second.undo()
        assert gradio_is_its_own()
        first.undo()  # twice is harmless
        assert gradio_is_its_own()
        again = gradio_tuning.Applied.apply()  # and they can be applied anew
        assert not gradio_is_its_own()
        again.undo()
    assert not gradio_is_its_own()  # this module's fixture holds them again


def test_gradio_tuning_off_leaves_patches_out_and_names_are_checked() -> None:
    with gradio_tuning.Applied.suspended():
        leaving_one = gradio_tuning.Applied.apply(["cheap_skips"])
        assert state_holder.SessionState is gradio_tuning.LightSessionState
        assert not getattr(gr.Blocks.postprocess_data, "_parley_cheap_skips", False)
        leaving_one.undo()
        nothing = gradio_tuning.Applied.apply(["all"])
        assert nothing.names == () and gradio_is_its_own()
        nothing.undo()
        with pytest.raises(ValueError, match="cheap_skip.*the names are lighter_sessions"):
            gradio_tuning.Applied.apply(["cheap_skip"])
        assert gradio_is_its_own()


def test_an_app_with_all_tuning_off_chats_on_gradio_s_own_code(
    fake_openai: Any, tmp_path: Path
) -> None:
    with gradio_tuning.Applied.suspended():
        running = start_app(fake_openai, tmp_path / "plain.db", GRADIO_TUNING_OFF="all")
        try:
            assert gradio_is_its_own()
            answer, conversation_id = running.client().predict("Hi", "", "", "{}", api_name="/chat")
            assert answer and conversation_id
        finally:
            running.close()
        with pytest.raises(ConfigError, match="GRADIO_TUNING_OFF"):
            start_app(fake_openai, tmp_path / "bad.db", GRADIO_TUNING_OFF="fast_everything")
