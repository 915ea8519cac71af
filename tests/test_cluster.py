"""What Parley processes share through a real redis-server (webapp/app/redis_cluster.py): run
slots with one limit over every process, Stop from any process, and the answers of a dead
process marked interrupted by another. Each "process" here is a RedisCluster with its own id,
in one Python process; tests/test_cluster_processes.py runs real `python -m webapp` ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storage import message_rows
from storage import repository as repo
from storage.db import make_engine, migrate, session_factory, unit_of_work
from storage.models import Message
from tests.redis_server import RedisServer
from webapp.app.cluster import Cluster, Reaper, database_reaper
from webapp.app.redis_cluster import RedisCluster
from webapp.app.redis_signin import SharedLoginThrottle
from webapp.app.runs import Run, RunLimitReached, RunManager


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def clusters(redis_server: RedisServer) -> AsyncIterator[Callable[..., RedisCluster]]:
    """Make RedisClusters on the test server (closed at the end); the keys start empty."""
    made: list[RedisCluster] = []

    def make(name: str, lease_s: float = 15.0) -> RedisCluster:
        cluster = RedisCluster(redis_server.url, lease_s=lease_s, process_id=name)
        made.append(cluster)
        return cluster

    first = make("flush")
    await first.redis.flushdb()
    yield make
    for cluster in made:
        await cluster.redis.aclose()
        await cluster.waiting.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float) -> float:
    """Poll `check` until it holds (bounded); returns the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"{what} did not happen within {timeout_s} s")
        await asyncio.sleep(0.05)  # polling shared state for a change, bounded
    return time.monotonic() - started


async def test_one_user_s_run_limit_holds_over_every_process(
    clusters: Callable[..., RedisCluster],
) -> None:
    a, b = clusters("a"), clusters("b")
    held = await a.hold(7, 2, limit=3)
    with pytest.raises(RunLimitReached, match=r"already have 2 .*at most 3 .*over every Parley"):
        await b.hold(7, 2, limit=3)
    assert len(await b.hold(7, 1, limit=3)) == 1  # the third slot, on the other process
    assert len(await b.hold(8, 3, limit=3)) == 3  # another user is not held back
    a.release(held)
    await eventually(lambda: _fits(b, 7, 2, 3), "the released slots coming back", 5)


async def _fits(cluster: RedisCluster, user_id: int, count: int, limit: int) -> bool:
    try:
        slots = await cluster.hold(user_id, count, limit)
    except RunLimitReached:
        return False
    cluster.release(slots)
    return True


async def test_a_dead_process_s_slots_free_themselves_after_a_lease_a_live_one_s_do_not(
    clusters: Callable[..., RedisCluster],
) -> None:
    dead, alive, other = clusters("dead", 1.0), clusters("alive", 1.0), clusters("other")
    await dead.hold(1, 2, limit=2)  # never renewed: its process is gone
    took = await eventually(lambda: _fits(other, 1, 2, 2), "the dead process's slots expiring", 5)
    assert took >= 0.5  # they lasted about a lease, not zero

    async with alive.running(_stops_nothing, _reaps_nothing()):
        await alive.hold(2, 2, limit=2)
        started = time.monotonic()
        while time.monotonic() - started < 2.5:  # 2.5 leases: renewed by the heartbeat
            assert not await _fits(other, 2, 1, 2)
            await asyncio.sleep(0.25)  # sampling over a span of time is what is tested


async def test_a_run_s_slot_goes_back_when_it_ends_on_its_process(
    clusters: Callable[..., RedisCluster],
) -> None:
    one = RunManager(max_per_user=1, cluster=clusters("one"))
    two = RunManager(max_per_user=1, cluster=clusters("two"))
    reservation = await one.hold(5)
    gate = asyncio.Event()

    async def work(run: Run) -> None:
        await gate.wait()

    run = one.launch(reservation, "c" * 32, None, work)
    with pytest.raises(RunLimitReached, match="MAX_RUNS_PER_USER, over every Parley process"):
        await two.hold(5)
    gate.set()
    await run.finished.wait()
    await eventually(lambda: _held_by(two, 5), "the slot coming back to the other process", 5)


async def _held_by(manager: RunManager, user_id: int) -> bool:
    try:
        reservation = await manager.hold(user_id)
    except RunLimitReached:
        return False
    reservation.release()
    return True


async def test_stop_from_another_process_ends_the_run_where_it_runs(
    clusters: Callable[..., RedisCluster],
) -> None:
    owner = RunManager(cluster=clusters("owner"))
    viewer = RunManager(cluster=clusters("viewer"))
    conversation = "d" * 32
    saved: list[str] = []

    async def work(run: Run) -> None:
        try:
            await asyncio.Event().wait()  # streams until it is cancelled
        finally:
            saved.append("final save")  # what TurnRecorder does on Stop

    async with owner.cluster.running(owner.stop_here, _reaps_nothing()):
        run = owner.launch(await owner.hold(3), conversation, None, work)
        await eventually(lambda: _indexed(viewer.cluster, 3, conversation), "the run's index", 5)
        assert await viewer.stop(3, "e" * 32) == 0  # another conversation: nothing
        assert await viewer.stop(4, conversation) == 0  # another user: nothing
        assert not run.done
        assert await viewer.stop(3, conversation) == 1
        assert run.done and saved == ["final save"]  # stopped and saved before the answer


async def _indexed(cluster: Cluster, user_id: int, conversation_id: str) -> bool:
    assert isinstance(cluster, RedisCluster)
    return bool(await cluster.redis.hlen(cluster.live_key(user_id, conversation_id)))


async def _stops_nothing(user_id: int, conversation_id: str) -> int:
    return 0


def _reaps_nothing() -> Reaper:
    async def owners() -> set[str | None]:
        return set()

    async def interrupt(dead: Any) -> int:
        return 0

    return Reaper(owners, interrupt)


def _streaming_rows(db: Path, owners: list[str | None]) -> tuple[Any, dict[str | None, str]]:
    """A database with one streaming answer per owner (None: a row from before owners)."""
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    sessions = session_factory(engine)
    ids: dict[str | None, str] = {}
    with unit_of_work(sessions) as session:
        user = repo.ensure_user(session=session, username="alice")
        assert user.id is not None
        for owner in owners:
            chat = repo.create_conversation(session=session, user_id=user.id, title="t")
            question = message_rows.add_message(
                session=session, user_id=user.id, conversation_id=chat.id, parent_id=None,
                role="user", content="q",
            )  # fmt: skip
            answer = message_rows.add_message(
                session=session, user_id=user.id, conversation_id=chat.id,
                parent_id=question.id, role="assistant", state="streaming", owner=owner,
                content="so far",
            )  # fmt: skip
            ids[owner] = answer.id
    return sessions, ids


def _states(sessions: Any, ids: dict[str | None, str]) -> dict[str | None, str]:
    with unit_of_work(sessions) as session:
        return {owner: session.get(Message, mid).state for owner, mid in ids.items()}  # type: ignore[union-attr]


async def test_a_dead_process_s_answers_are_interrupted_by_another_and_only_those(
    clusters: Callable[..., RedisCluster], tmp_path: Path
) -> None:
    alive, reaper_side = clusters("alive", 1.0), clusters("reaper", 1.0)
    sessions, ids = _streaming_rows(tmp_path / "p.db", ["alive", "dead", None])
    async with (
        alive.running(_stops_nothing, _reaps_nothing()),
        reaper_side.running(_stops_nothing, database_reaper(sessions)),
    ):
        took = await eventually(
            lambda: _is(sessions, ids, "dead", "interrupted"), "the dead owner's answer", 10
        )
        assert took >= 0.9  # a whole lease of silence first, not the first look
        states = _states(sessions, ids)
        assert states == {"alive": "streaming", "dead": "interrupted", None: "interrupted"}

    with unit_of_work(sessions) as session:
        row = session.get(Message, ids["dead"])
        assert row is not None and row.content == "so far"  # the text is kept
        assert row.error and "stopped while this answer was streaming" in row.error


async def _is(sessions: Any, ids: dict[str | None, str], owner: str, state: str) -> bool:
    return (await asyncio.to_thread(_states, sessions, ids))[owner] == state


async def test_a_redis_restart_does_not_make_live_processes_look_dead(
    clusters: Callable[..., RedisCluster], redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis comes back empty: the heartbeats set the keys (and the slots held) again within a
    third of a lease, before any reaper has missed a process for a whole lease."""
    alive, watcher = clusters("alive", 1.5), clusters("watcher", 1.5)
    sessions, ids = _streaming_rows(tmp_path / "p.db", ["alive"])
    async with (
        alive.running(_stops_nothing, _reaps_nothing()),
        watcher.running(_stops_nothing, database_reaper(sessions)),
    ):
        await eventually(lambda: _exists(watcher, "alive"), "the first heartbeat", 5)
        await alive.hold(4, 1, limit=1)  # one answer streaming for user 4
        redis_server.stop()
        assert await watcher.health() is not None  # /healthz says so meanwhile
        redis_server.start()
        await eventually(lambda: _exists(watcher, "alive"), "the heartbeat after the restart", 5)
        assert await watcher.health() is None
        assert not await _fits(watcher, 4, 1, 1)  # the slot was written again, the limit holds
        started = time.monotonic()
        while time.monotonic() - started < 3.0:  # two leases of the reaper looking
            assert _states(sessions, ids) == {"alive": "streaming"}
            await asyncio.sleep(0.25)  # sampling over a span of time is what is tested


async def _exists(cluster: RedisCluster, process_id: str) -> bool:
    try:
        return bool(await cluster.redis.exists(cluster.proc_key(process_id)))
    except Exception:
        return False


def test_failed_sign_ins_lock_a_name_out_on_every_process(redis_server: RedisServer) -> None:
    one = SharedLoginThrottle(redis_server.url, max_failures=3, lockout_s=60)
    two = SharedLoginThrottle(redis_server.url, max_failures=3, lockout_s=60)
    key = f"alice@10.0.0.7:{time.time_ns()}"
    for _ in range(2):
        one.failed(key)
    assert two.retry_after(key) == 0  # two failures: still allowed
    two.failed(key)  # the third, on the other process
    assert 55 < one.retry_after(key) <= 60 and 55 < two.retry_after(key) <= 60
    assert one.retry_after("bob@10.0.0.7") == 0  # per key
    two.forgive_one(key)  # counted up front, then it succeeded
    assert one.retry_after(key) == 0
    one.failed(key)
    one.succeeded(key)  # a success clears the key everywhere
    assert two.retry_after(key) == 0


def test_without_redis_the_sign_in_throttle_falls_back_to_this_process(tmp_path: Path) -> None:
    down = RedisServer(tmp_path / "down")  # never started: nothing listens on its port
    throttle = SharedLoginThrottle(down.url, max_failures=2, lockout_s=60)
    throttle.failed("mallory")
    throttle.failed("mallory")
    assert throttle.retry_after("mallory") > 55  # never off, even when Redis is


async def test_a_tool_call_waiting_on_one_process_is_approved_from_another(
    clusters: Callable[..., RedisCluster],
) -> None:
    owner = RunManager(cluster=clusters("owner"))
    viewer = RunManager(cluster=clusters("viewer"))
    conversation = "f" * 32
    waiting = {(9, conversation)}  # what the owner's approvals hold
    decided: list[bool] = []

    def decide_here(user_id: int, conversation_id: str, approved: bool) -> bool:
        if (user_id, conversation_id) not in waiting:
            return False
        waiting.discard((user_id, conversation_id))
        decided.append(approved)
        return True

    async def work(run: Run) -> None:
        await asyncio.Event().wait()

    async with owner.cluster.running(owner.stop_here, _reaps_nothing(), decide_here):
        owner.launch(await owner.hold(9), conversation, None, work)
        await eventually(lambda: _indexed(viewer.cluster, 9, conversation), "the run's index", 5)
        assert await viewer.cluster.decide_elsewhere(9, conversation, False) is True
        assert decided == [False]  # denied, on the process that runs it
        assert await viewer.cluster.decide_elsewhere(9, conversation, True) is False  # none left
        assert await viewer.stop(9, conversation) == 1


def test_a_snapshot_travels_with_its_text_its_calls_and_its_error() -> None:
    from webapp.app import run_wire
    from webapp.app.turn_runs import TurnUpdate
    from webapp.core.messages import ToolCall
    from webapp.core.turn import ToolCallView, TurnProgress
    from webapp.provider.error_info import ErrorInfo

    progress = TurnProgress(n=2)
    progress.choices[0].content, progress.choices[0].reasoning = "Hello", "thinking"
    progress.choices[1].content = "Hi"
    call = ToolCall("call_1", "send_mail", '{"to": "bob"}')
    progress.tools = [ToolCallView(call, status="awaiting_approval")]
    error = ErrorInfo("rate_limited", provider="SiliconFlow", status=429)
    update = TurnUpdate("c" * 32, [], ["a1", "a2"], progress, "SiliconFlow", "m", error=error)
    copy = run_wire.blank("c" * 32)
    run_wire.apply_wire(copy, run_wire.to_wire(update))
    assert [c.content for c in copy.progress.choices] == ["Hello", "Hi"]
    assert copy.progress.choices[0].reasoning == "thinking"
    assert copy.progress.awaiting_approval == [call]  # approvable from the other process
    assert copy.error == error and copy.assistant_ids == ["a1", "a2"] and copy.model == "m"
    before = run_wire.signature(update)
    progress.choices[0].content += " there"
    assert run_wire.signature(update) != before  # a change is sent again


async def test_a_viewer_on_another_process_follows_through_a_redis_restart(
    clusters: Callable[..., RedisCluster], redis_server: RedisServer
) -> None:
    from webapp.app import run_wire

    owner = RunManager(cluster=clusters("owner", 1.5))
    viewer = RunManager(cluster=clusters("viewer", 1.5))
    conversation = "9" * 32
    snapshot = run_wire.blank(conversation)
    snapshot.assistant_ids = ["a1"]
    go_on, halfway = asyncio.Event(), asyncio.Event()

    async def work(run: Run) -> None:
        choice = run.snapshot.progress.choices[0]
        for n in range(40):
            if n == 20:
                halfway.set()
                await go_on.wait()  # the test restarts Redis here
            choice.content += f"w{n} "
            run.changed()
            await asyncio.sleep(0.02)  # an answer streaming at its own pace
        run.snapshot.state = "complete"

    async with (
        owner.cluster.running(owner.stop_here, _reaps_nothing()),
        viewer.cluster.running(viewer.stop_here, _reaps_nothing()),
    ):
        await eventually(lambda: _exists(viewer.cluster, "owner"), "the owner's heartbeat", 5)
        run = owner.launch(await owner.hold(6), conversation, snapshot, work)
        await eventually(lambda: _indexed(viewer.cluster, 6, conversation), "the index", 5)
        [remote] = await viewer.find(6, conversation)
        await halfway.wait()
        redis_server.stop()
        redis_server.start()  # empty
        go_on.set()
        frames = [frame async for frame in viewer.watch([remote], 0.05)]
        await run.finished.wait()
        assert frames[-1] is True and remote.snapshot.state == "complete"
        text = remote.snapshot.progress.choices[0].content
        assert text == "".join(f"w{n} " for n in range(40))  # all of it, through the restart
