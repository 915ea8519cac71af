"""Gradio 6 internals Parley tunes for speed, each measured with bench/load.py.

Each function touches one documented piece of Gradio's internals and is checked by
tests/test_gradio_tuning.py, so an upgrade that moves that piece fails a test instead of silently
losing the gain. gradio is pinned to 6.31.* in pyproject.toml while these exist.

The four that change Gradio for the whole process (PROCESS_PATCHES) are applied by `apply`,
each can be left out with GRADIO_TUNING_OFF (names, or "all": to rule one out when chasing a
bug), and `Applied.undo` restores Gradio's own code once the last app built with them closes.
The per-app ones (queue analytics and polling, the login check) change only that app.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Collection, Iterator
from copy import copy
from typing import Any

import anyio
import fastapi
import gradio as gr
from gradio import state_holder

Undo = Callable[[], None]


def _nothing() -> None:
    """The undo of a patch that found nothing to change."""


class LightSessionState(state_holder.SessionState):
    """A session's server-side state without a copy of every component's config up front.

    Gradio 6.31's SessionState builds `config_for_block` for every block of the app when a
    session first appears (Parley's page has ~200), only so that deep links
    (`gr.DeepLinkButton`, which Parley does not use) can replay the page. A new session is
    every new browser tab and every `/chat` API call, so in a burst of 50 calls that work
    (~25 ms each on a 2-core machine) queued in front of every first token, and it kept ~200
    config dicts per idle tab in memory. Here the copies are made only for the blocks an event
    actually changes (Gradio's own `_update_value_in_config` fills a missing entry on demand),
    which is all a deep link would need to replay.
    """

    def __init__(self, blocks: Any) -> None:  # same attributes as Gradio's, config_values lazy
        self.blocks_config = copy(blocks.default_config)
        self.config_values: dict[int, Any] = {}
        self.state_data: dict[int, Any] = {}
        self._state_ttl: dict[int, Any] = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600


def lighter_sessions() -> Undo:
    """New sessions (tabs, API calls) skip the per-session copy of every component's config."""
    original = state_holder.SessionState
    state_holder.SessionState = LightSessionState  # type: ignore[misc]

    def undo() -> None:
        state_holder.SessionState = original  # type: ignore[misc]

    return undo


def skip_queue_analytics(demo: gr.Blocks) -> None:
    """Stop Gradio rebuilding a pandas summary of past events after every event.

    Gradio 6.31 does this for its monitoring dashboard (off here): ~2 ms of CPU per event with
    100 past events and ~7 ms with 10,000 (measured on a 2-core machine), in a worker thread.
    """
    queue = getattr(demo, "_queue", None)
    if queue is not None and hasattr(queue, "ANAYLTICS_CACHE_FREQUENCY"):  # Gradio's spelling
        queue.ANAYLTICS_CACHE_FREQUENCY = 2**31
        queue.ANALYTICS_MAX_EVENTS = 100


# The queue's loops poll: Gradio 6.31 checks for new events every 1 ms and for progress every
# 10 ms, which keeps an idle server at ~11% of a core (measured). 5 ms adds at most 5 ms before
# an event starts; Parley reports no gr.Progress, so its loop can look rarely.
QUEUE_POLL_S = 0.005
PROGRESS_POLL_S = 0.1


def calmer_queue(demo: gr.Blocks) -> None:
    """Poll for new queue events every 5 ms instead of every 1 ms."""
    queue = getattr(demo, "_queue", None)
    if queue is not None and hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = QUEUE_POLL_S
        queue.progress_update_sleep_when_free = PROGRESS_POLL_S


def no_matplotlib_retries() -> Undo:
    """Make `import matplotlib` fail at once when it is not installed.

    Gradio wraps every event call in MatplotlibBackendMananger, which tries `import matplotlib`
    twice per call; without matplotlib each try searches every sys.path entry again (~3% of the
    CPU of a streaming server, by py-spy). A None in sys.modules is Python's documented way to
    make an import fail immediately.
    """
    if "matplotlib" in sys.modules or importlib.util.find_spec("matplotlib") is not None:
        return _nothing
    sys.modules["matplotlib"] = None  # type: ignore[assignment]

    def undo() -> None:
        if "matplotlib" in sys.modules and sys.modules["matplotlib"] is None:
            del sys.modules["matplotlib"]

    return undo


def login_check_on_the_loop(gradio_app: fastapi.FastAPI) -> bool:
    """Run Gradio's `login_check` dependency on the event loop instead of in a worker thread.

    Gradio 6.31 declares it with `def`, so FastAPI sends every queue join, queue stream and file
    request to a thread pool (anyio's, which starts a new thread when none is idle) only to
    compare a user name with None. In a burst of 50 chats that was ~20% of the server's CPU,
    all of it before the first token (py-spy --gil). The check itself is unchanged: the same
    function runs, inside an async twin that FastAPI calls on the loop.
    Returns False when the app has no such dependency (a Gradio change the test catches).
    """
    checks = {
        dependency.dependency
        for route in gradio_app.routes
        for dependency in getattr(route, "dependencies", ())
        if getattr(dependency.dependency, "__name__", "") == "login_check"
    }
    for check in checks:
        if not inspect.iscoroutinefunction(check):
            gradio_app.dependency_overrides[check] = _on_the_loop(check)
    return bool(checks)


def _on_the_loop(check: Any) -> Any:
    user = inspect.signature(check).parameters["user"].default  # Depends(get_current_user)

    async def login_check(user: str | None = user) -> Any:
        return check(user)

    return login_check


_SKIP = {"__type__": "update"}  # what gr.skip() returns


def cheap_skips() -> Undo:
    """Let `gr.skip()` in a streamed update cost nothing.

    Gradio 6.31 treats a skipped output as a property update with no properties: it builds a
    new instance of the component and its whole config (pydantic JSON schema included) on every
    yield, only to send `{"__type__": "update"}`. Parley's send handler skips four outputs on
    each streamed frame, which made that 60% of the UI path's CPU (py-spy --gil). Here a bare
    skip of a non-state output is passed over and answered with the same `{"__type__":
    "update"}`; everything else goes through Gradio's own postprocessing unchanged.
    """
    original = gr.Blocks.postprocess_data
    if getattr(original, "_parley_cheap_skips", False):
        return _nothing

    async def postprocess_data(
        self: gr.Blocks, block_fn: Any, predictions: Any, state: Any
    ) -> list[Any]:
        outputs = block_fn.outputs
        if predictions == _SKIP and len(outputs) > 1:
            predictions = [dict(_SKIP) for _ in outputs]
        bare = []
        if isinstance(predictions, list | tuple) and len(predictions) == len(outputs) > 1:
            bare = [
                i
                for i, value in enumerate(predictions)
                if value == _SKIP and not outputs[i].stateful
            ]
        if not bare:
            return await original(self, block_fn, predictions, state)
        passed = list(predictions)
        for i in bare:
            passed[i] = gr.components._Keywords.FINISHED_ITERATING  # Gradio skips these
        result = await original(self, block_fn, passed, state)
        for i in bare:
            result[i] = dict(_SKIP)
        return result

    postprocess_data._parley_cheap_skips = True  # type: ignore[attr-defined]
    gr.Blocks.postprocess_data = postprocess_data  # type: ignore[method-assign]

    def undo() -> None:
        gr.Blocks.postprocess_data = original  # type: ignore[method-assign]

    return undo


class _InlineConversions:
    """Stands in for the `anyio` module inside gradio.blocks (see `inline_conversions`)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(anyio, name)

    class to_thread:  # noqa: N801 (mirrors anyio.to_thread)
        @staticmethod
        async def run_sync(function: Any, *args: Any, **kwargs: Any) -> Any:
            owner = getattr(function, "__self__", None)
            if isinstance(owner, gr.components.Component) and getattr(function, "__name__", "") in (
                "preprocess",
                "postprocess",
            ):
                return function(*args)
            return await anyio.to_thread.run_sync(function, *args, **kwargs)


def inline_conversions() -> Undo:
    """Convert inputs and outputs on the event loop instead of in a worker thread.

    Gradio 6.31 hands every component's preprocess/postprocess call to a worker thread: for a
    streaming Chatbot that is one thread round trip per update, and 28 for the Send event's
    inputs. These are short, pure data conversions (Parley's own slow work, like decoding
    images, already runs in threads of its own), and the GIL runs them one at a time either
    way, so the round trips were only overhead (~10% of the UI path's CPU, py-spy --gil).
    Event handlers that are plain functions still run in threads, as before.
    """
    blocks_module: Any = sys.modules["gradio.blocks"]
    original = blocks_module.anyio
    if isinstance(original, _InlineConversions):
        return _nothing
    blocks_module.anyio = _InlineConversions()

    def undo() -> None:
        blocks_module.anyio = original

    return undo


PROCESS_PATCHES: dict[str, Callable[[], Undo]] = {
    "lighter_sessions": lighter_sessions,
    "no_matplotlib_retries": no_matplotlib_retries,
    "cheap_skips": cheap_skips,
    "inline_conversions": inline_conversions,
}


class Applied:
    """The process-wide patches in effect for one built app; `undo` when the app closes.

    Apps built together in one process (the tests build many) share the patches: Gradio's own
    code comes back when the last of them is undone."""

    _holders = 0  # apps built with the patches and not closed yet
    _names: tuple[str, ...] = ()  # the patches in effect
    _undos: list[Undo] = []  # in the order applied; undone in reverse

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._done = False

    @classmethod
    def apply(cls, off: Collection[str] = ()) -> Applied:
        """Apply every process-wide patch not named in `off` ("all": none of them)."""
        unknown = set(off) - set(PROCESS_PATCHES) - {"all"}
        if unknown:
            known = ", ".join(PROCESS_PATCHES)
            raise ValueError(f"unknown Gradio tuning {sorted(unknown)}: the names are {known}")
        names = () if "all" in off else tuple(n for n in PROCESS_PATCHES if n not in off)
        if cls._holders == 0:
            cls._names, cls._undos = names, [PROCESS_PATCHES[name]() for name in names]
        cls._holders += 1
        return cls(names)

    @classmethod
    @contextlib.contextmanager
    def suspended(cls) -> Iterator[None]:
        """Gradio's own code for the length of the block, whoever holds the patches (for
        tests); what the block applies is undone after it, and the holders' patches return."""
        holders, names = cls._holders, cls._names
        cls._release_all()
        try:
            yield
        finally:
            cls._release_all()
            if holders:
                cls._holders, cls._names = holders, names
                cls._undos = [PROCESS_PATCHES[name]() for name in names]

    @classmethod
    def _release_all(cls) -> None:
        for undo in reversed(cls._undos):
            undo()
        cls._holders, cls._names, cls._undos = 0, (), []

    def undo(self) -> None:
        """Release this app's hold; the last one restores Gradio's own code."""
        if self._done:
            return
        self._done = True
        Applied._holders = max(Applied._holders - 1, 0)
        if Applied._holders == 0:
            Applied._release_all()
