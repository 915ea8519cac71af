"""Several Parley processes on one database, sharing through Redis (REDIS_URL).

What lives in Redis, under `parley:` (all of it rebuilt by the processes within one lease if
Redis restarts empty):

- `proc:{process}`: the process's heartbeat, set every lease/3 with the lease as its expiry.
  A process whose key has been missing for a whole lease is dead.
- `slots:{user}`: a sorted set of the user's run slots over every process, scored by when
  each expires. A Lua script drops the expired ones, counts and adds in one step (Redis's
  clock, so hosts' clocks do not matter); the holder renews its slots with its heartbeat, so
  the slots of a process that dies free themselves after a lease.
- `signin:{hash of a name at an address, or of an address}`: failed sign-ins, so the lockout
  holds whichever process a sign-in reaches (webapp/app/redis_signin.py).
- `live:{user}:{conversation}`: which process owns each live run of a conversation, and its
  kind (chat, or a compare column).
- channel `control:{process}`: requests for that process's runs. Stop: the answer (how many
  were stopped, after their final saves) comes back on a list `reply:{request}`. Watch: a
  viewer on another process follows a run; while it keeps asking (every lease/3), the owner
  adds the run's snapshot (webapp/app/run_wire.py) to the stream `run:{run}` when it changed,
  at most every PUBLISH_INTERVAL_S, and its last one when the run ends.

What is not here: the answers themselves. Rows are in the database, stamped with the owning
process; when a process is dead, any other marks its streaming rows interrupted with the text
they hold (PartialSaver writes it about every second).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from webapp.app import run_wire
from webapp.app.cluster import Cluster, DecideLocal, LiveRun, Reaper, StopLocal
from webapp.app.remote_runs import RemoteRun, follow
from webapp.app.runs import RunLimitReached

log = logging.getLogger(__name__)

PREFIX = "parley"
PUBLISH_INTERVAL_S = 0.2  # a watched run's snapshot goes out at most this often
UNREACHABLE = (
    "Parley cannot reach Redis (REDIS_URL), which its processes share run slots through; "
    "nothing was sent. Try again in a moment (an admin should check REDIS_URL and /healthz)."
)
# KEYS[1] the user's slots; ARGV: lease in ms, the limit, then the new slots' ids.
# Returns -1 when they were added, else how many the user holds already.
HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held + #ARGV - 2 > limit then return held end
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], now + lease, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return -1
"""
# KEYS[1] the user's slots; ARGV: lease in ms, then the slots to keep alive: the ones this
# process still holds, added again if Redis lost them (a restart).
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + lease, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 0
"""


class RedisCluster(Cluster):
    """Run slots, run ownership and Stop shared by every process that has the same REDIS_URL."""

    shared = True

    def __init__(self, url: str, *, lease_s: float = 15.0, process_id: str | None = None) -> None:
        super().__init__(process_id)
        self.lease_s = lease_s
        # A connection Redis closed (a restart) is reconnected and the command tried again at
        # once, so a heartbeat after a restart is not lost to a stale connection.
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=max(2.0, lease_s / 5),
            socket_connect_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            retry_on_error=[RedisConnectionError],
        )
        # Stop requests and their replies wait on a connection longer than any socket timeout:
        # their own client, which checks an idle connection is alive instead.
        self.waiting: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=2.0,
            health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            retry_on_error=[RedisConnectionError],
        )
        self._slots: dict[int, set[str]] = {}  # this process's held slots, per user
        self._runs: dict[str, LiveRun] = {}  # this process's live runs, by id
        self._watched: dict[str, float] = {}  # runs followed from elsewhere: id -> until when
        self._followed: dict[str, RemoteRun] = {}  # other processes' runs followed here
        self._background: set[asyncio.Task[Any]] = set()
        self._decide_local: DecideLocal | None = None

    # ---- keys ----------------------------------------------------------------------------
    def proc_key(self, process_id: str) -> str:
        return f"{PREFIX}:proc:{process_id}"

    @staticmethod
    def slots_key(user_id: int) -> str:
        return f"{PREFIX}:slots:{user_id}"

    @staticmethod
    def live_key(user_id: int, conversation_id: str) -> str:
        return f"{PREFIX}:live:{user_id}:{conversation_id}"

    @property
    def _lease_ms(self) -> int:
        return max(1000, int(self.lease_s * 1000))

    # ---- run slots ---------------------------------------------------------------------
    async def hold(self, user_id: int, count: int, limit: int) -> list[str]:
        slots = [f"{self.process_id}:{uuid.uuid4().hex[:12]}" for _ in range(count)]
        try:
            held = await self.redis.eval(  # type: ignore[misc]
                HOLD, 1, self.slots_key(user_id), self._lease_ms, limit, *slots
            )
        except RedisError as exc:
            log.warning("run slots: Redis unreachable (%s)", type(exc).__name__)
            raise RunLimitReached(UNREACHABLE) from None
        if int(held) >= 0:
            more = f" (this needs {count})" if count > 1 else ""
            raise RunLimitReached(
                f"You already have {held} answer{'s' if held != 1 else ''} streaming; at most "
                f"{limit} can run at once (MAX_RUNS_PER_USER, over every Parley process)"
                f"{more}. Wait for one to finish or stop it, then send again."
            )
        self._slots.setdefault(user_id, set()).update(slots)
        return slots

    def release(self, slots: Sequence[str]) -> None:
        by_user: dict[int, list[str]] = {}
        for user_id, held in self._slots.items():
            mine = [s for s in slots if s in held]
            if mine:
                held.difference_update(mine)
                by_user[user_id] = mine
        self._slots = {u: held for u, held in self._slots.items() if held}
        for user_id, mine in by_user.items():
            self._later(self.redis.zrem(self.slots_key(user_id), *mine), "release run slots")

    # ---- live runs -----------------------------------------------------------------------
    def _entry(self, run: LiveRun) -> str:
        return json.dumps({"owner": self.process_id, "kind": run.kind})

    def run_started(self, run: LiveRun) -> None:
        self._runs[run.id] = run
        self._later(self._index(run), "index a run")

    async def _index(self, run: LiveRun) -> None:
        key = self.live_key(run.user_id, run.conversation_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, run.id, self._entry(run))
            pipe.pexpire(key, self._lease_ms * 3)
            await pipe.execute()

    def run_ended(self, run: LiveRun) -> None:
        self._runs.pop(run.id, None)
        key = self.live_key(run.user_id, run.conversation_id)
        self._later(self._unindex(key, run, self._watched.pop(run.id, None) is not None), "end")

    async def _unindex(self, key: str, run: LiveRun, watched: bool) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            if watched:  # the last snapshot, so its viewers end with the run
                stream = self.stream_key(run.id)
                pipe.xadd(stream, {"end": run_wire.to_wire(run.snapshot)}, maxlen=5)
                pipe.expire(stream, 60)
            pipe.hdel(key, run.id)
            await pipe.execute()

    def control_channel(self, process_id: str) -> str:
        return f"{PREFIX}:control:{process_id}"

    def stream_key(self, run_id: str) -> str:
        return f"{PREFIX}:run:{run_id}"

    async def _entries(self, user_id: int, conversation_id: str) -> dict[str, dict[str, str]]:
        """The conversation's runs on live processes other than this one: id -> entry."""
        raw = await self.redis.hgetall(self.live_key(user_id, conversation_id))  # type: ignore[misc]
        entries: dict[str, dict[str, str]] = {}
        for run_id, value in raw.items():
            try:
                entry = json.loads(value)
                owner = str(entry["owner"])
            except (ValueError, KeyError, TypeError):
                continue
            if owner != self.process_id and await self.redis.exists(self.proc_key(owner)):
                entries[run_id.decode()] = {"owner": owner, "kind": str(entry.get("kind"))}
        return entries

    async def runs_elsewhere(
        self, user_id: int, conversation_id: str, kind: str | None = None
    ) -> list[Any]:
        try:
            entries = await self._entries(user_id, conversation_id)
        except RedisError as exc:
            log.warning("runs on other processes: Redis unreachable (%s)", type(exc).__name__)
            return []
        runs = []
        for run_id, entry in entries.items():
            if kind is None or entry["kind"] == kind:
                runs.append(self._stand_in(run_id, user_id, conversation_id, entry))
        # Their first snapshots (the owner sends one within a publish interval of being asked),
        # so a viewer starts from the answer so far, not from nothing.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3.0):
                await asyncio.gather(*(run.arrived.wait() for run in runs))
        return runs

    def _stand_in(
        self, run_id: str, user_id: int, conversation_id: str, entry: dict[str, str]
    ) -> RemoteRun:
        """The one stand-in this process keeps for a run of another (a page's follow-live and
        its live feed, and any /attach, share it and its follow loop) while it is live."""
        run = self._followed.get(run_id)
        if run is None or run.done:
            snapshot = run_wire.blank(conversation_id)
            run = RemoteRun(run_id, user_id, conversation_id, snapshot, entry["kind"])
            run.follow = asyncio.create_task(follow(self, run, entry["owner"]))
            run.follow.add_done_callback(functools.partial(self._unfollow, run))
            self._followed[run_id] = run
        return run

    def _unfollow(self, run: RemoteRun, _task: asyncio.Task[None]) -> None:
        if self._followed.get(run.id) is run:  # not a newer stand-in for the same id
            del self._followed[run.id]

    async def stop_elsewhere(self, user_id: int, conversation_id: str, timeout_s: float) -> int:
        request = {"op": "stop", "user": user_id, "conversation": conversation_id}
        return sum(await self._ask(request, "stop on other processes", timeout_s))

    async def decide_elsewhere(
        self, user_id: int, conversation_id: str, approved: bool, timeout_s: float = 5.0
    ) -> bool:
        request = {
            "op": "decide",
            "user": user_id,
            "conversation": conversation_id,
            "approved": approved,
        }
        return any(await self._ask(request, "approve on other processes", timeout_s))

    async def _ask(self, request: dict[str, Any], what: str, timeout_s: float) -> list[int]:
        """Send `request` to the processes owning the conversation's runs; their answers (a
        number each), as many as came within `timeout_s`."""
        try:
            entries = await self._entries(int(request["user"]), str(request["conversation"]))
            owners = {entry["owner"] for entry in entries.values()}
            if not owners:
                return []
            reply = f"{PREFIX}:reply:{uuid.uuid4().hex}"
            text = json.dumps({**request, "reply": reply})
            for owner in owners:
                await self.redis.publish(f"{PREFIX}:control:{owner}", text)
            answers, deadline = [], time.monotonic() + timeout_s
            for _ in owners:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                async with asyncio.timeout(left + 2):  # a Redis gone quiet ends the wait too
                    answer = await self.waiting.blpop([reply], timeout=max(1, round(left)))  # type: ignore[misc]
                if answer is None:
                    break
                answers.append(int(answer[1]))
            return answers
        except (RedisError, TimeoutError) as exc:
            log.warning("%s: Redis unreachable (%s)", what, type(exc).__name__)
            return []

    # ---- health ------------------------------------------------------------------------
    async def health(self) -> str | None:
        try:
            async with asyncio.timeout(2.0):
                await self.redis.ping()  # type: ignore[misc]
        except (RedisError, TimeoutError, OSError) as exc:
            return f"unreachable ({type(exc).__name__})"
        return None

    # ---- while the server runs -----------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(
        self, stop_local: StopLocal, reaper: Reaper, decide_local: DecideLocal | None = None
    ) -> AsyncIterator[None]:
        self._decide_local = decide_local
        tasks = [
            asyncio.create_task(self._heartbeat(), name="cluster-heartbeat"),
            asyncio.create_task(self._control(stop_local), name="cluster-control"),
            asyncio.create_task(self._reap(reaper), name="cluster-reaper"),
            asyncio.create_task(self._publish(), name="cluster-publisher"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, *self._background, return_exceptions=True)
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(self.proc_key(self.process_id))  # a clean exit
            await self.redis.aclose()
            await self.waiting.aclose()

    async def _heartbeat(self) -> None:
        """Say this process is alive, and keep its slots and index entries, every lease/3."""
        healthy = True
        while True:
            try:
                await self._beat()
                if not healthy:
                    log.warning("Redis is reachable again: this process's runs are shared again")
                healthy = True
            except RedisError as exc:
                if healthy:
                    log.warning("heartbeat: Redis unreachable (%s)", type(exc).__name__)
                healthy = False
            await asyncio.sleep(self.lease_s / 3)

    async def _beat(self) -> None:
        lease = self._lease_ms
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id, slots in self._slots.items():
                pipe.eval(RENEW, 1, self.slots_key(user_id), lease, *slots)
            for run in self._runs.values():
                key = self.live_key(run.user_id, run.conversation_id)
                pipe.hset(key, run.id, self._entry(run))  # again, if Redis restarted empty
                pipe.pexpire(key, lease * 3)
            # Last: whoever sees this process alive also sees its slots and runs.
            pipe.set(self.proc_key(self.process_id), json.dumps({"since": time.time()}), px=lease)
            await pipe.execute()

    async def _control(self, stop_local: StopLocal) -> None:
        """Answer other processes' requests for this process's runs."""
        channel = f"{PREFIX}:control:{self.process_id}"
        while True:
            try:
                async with self.waiting.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel)
                    async for message in pubsub.listen():
                        await self._answer(message, stop_local)
            except RedisError as exc:
                log.warning("requests: Redis unreachable (%s)", type(exc).__name__)
                await asyncio.sleep(min(5.0, self.lease_s / 3))  # then subscribe again

    async def _answer(self, message: dict[str, Any], stop_local: StopLocal) -> None:
        """One request from another process: watch a run, or stop a conversation's runs (in
        a task of its own: it waits for the final saves, and the next requests must not)."""
        try:
            request = json.loads(message["data"])
            op = request["op"]
            if op == "watch":
                self._watched[str(request["run"])] = time.monotonic() + self.lease_s
            elif op in ("stop", "decide"):
                user_id, conversation_id = int(request["user"]), str(request["conversation"])
                reply = str(request["reply"])
                if not reply.startswith(f"{PREFIX}:reply:"):
                    return
                if op == "stop":
                    stopping = self._stop_for(user_id, conversation_id, reply, stop_local)
                    self._later(stopping, "answer a Stop request")
                else:
                    approved, decide = request["approved"] is True, self._decide_local
                    found = decide is not None and decide(user_id, conversation_id, approved)
                    self._later(self._reply(reply, int(found)), "answer an approval")
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignored a malformed control message")

    async def _stop_for(
        self, user_id: int, conversation_id: str, reply: str, stop_local: StopLocal
    ) -> None:
        await self._reply(reply, await stop_local(user_id, conversation_id))

    async def _reply(self, reply: str, value: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(reply, value)
            pipe.expire(reply, 60)
            await pipe.execute()

    async def _reap(self, reaper: Reaper) -> None:
        """Mark the answers of processes dead for a whole lease interrupted (any process may:
        the UPDATE only matches rows still streaming, so two doing it at once is harmless)."""
        missing_since: dict[str, float] = {}
        while True:
            await asyncio.sleep(self.lease_s / 2 * random.uniform(0.8, 1.2))
            try:
                owners = await reaper.owners()
                dead: list[str | None] = [None] if None in owners else []
                now = time.monotonic()
                for owner in owners - {None, self.process_id}:
                    assert owner is not None
                    if await self.redis.exists(self.proc_key(owner)):
                        missing_since.pop(owner, None)
                    elif now - missing_since.setdefault(owner, now) >= self.lease_s:
                        dead.append(owner)
                if dead:
                    count = await reaper.interrupt(dead)
                    for owner in dead:
                        missing_since.pop(str(owner), None)
                    if count:
                        log.warning(
                            "%d answers of %d stopped Parley processes marked interrupted",
                            count,
                            len(dead),
                        )
            except RedisError as exc:
                log.warning("reaper: Redis unreachable (%s)", type(exc).__name__)
            except Exception:
                log.exception("reaper: could not check for answers of stopped processes")

    async def _publish(self) -> None:
        """Send the snapshots of the runs followed from elsewhere, when they changed."""
        sent: dict[str, tuple[Any, ...]] = {}
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL_S)
            now = time.monotonic()
            self._watched = {r: until for r, until in self._watched.items() if until > now}
            sent = {r: s for r, s in sent.items() if r in self._watched}
            due = []
            for run_id in self._watched:
                run = self._runs.get(run_id)
                if run is None:
                    continue
                signature = run_wire.signature(run.snapshot)
                if sent.get(run_id) != signature:
                    sent[run_id] = signature
                    due.append((self.stream_key(run_id), run_wire.to_wire(run.snapshot)))
            if not due:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for stream, text in due:
                        pipe.xadd(stream, {"view": text}, maxlen=5)
                        pipe.expire(stream, 60)
                    await pipe.execute()
            except RedisError as exc:
                log.warning("run snapshots: Redis unreachable (%s)", type(exc).__name__)

    def _later(self, work: Any, what: str) -> None:
        """Run a Redis write without waiting for it (a failure is logged, the lease heals)."""

        async def run() -> None:
            try:
                await work
            except RedisError as exc:
                log.warning("%s: Redis unreachable (%s)", what, type(exc).__name__)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
