"""Several Parley processes on one database, sharing through Redis (REDIS_URL).

What lives in Redis, under `parley:` (all of it rebuilt by the processes within one lease if
Redis restarts empty):

- `proc:{process}`: the process's heartbeat, set every lease/3 with the lease as its expiry.
  A process whose key has been missing for a whole lease is dead.
- `slots:{user}`: a sorted set of the user's run slots over every process, scored by when
  each expires. A Lua script drops the expired ones, counts and adds in one step (Redis's
  clock, so hosts' clocks do not matter); the holder renews its slots with its heartbeat, so
  the slots of a process that dies free themselves after a lease.
- `live:{user}:{conversation}`: which process owns each live run of a conversation.
- channel `control:{process}`: Stop requests for that process's runs; the answer (how many
  were stopped, after their final saves) comes back on a list `reply:{request}`.

What is not here: the answers themselves. Rows are in the database, stamped with the owning
process; when a process is dead, any other marks its streaming rows interrupted with the text
they hold (PartialSaver writes it about every second).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from webapp.app.cluster import Cluster, Reaper, StopLocal
from webapp.app.runs import RunLimitReached

log = logging.getLogger(__name__)

PREFIX = "parley"
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
# KEYS[1] the user's slots; ARGV: lease in ms, then the slots to keep alive (XX: only those
# still there, so a slot released meanwhile stays released).
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 0
"""


class RedisCluster(Cluster):
    """Run slots, run ownership and Stop shared by every process that has the same REDIS_URL."""

    shared = True

    def __init__(self, url: str, *, lease_s: float = 15.0, process_id: str | None = None) -> None:
        super().__init__(process_id)
        self.lease_s = lease_s
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=max(2.0, lease_s / 5), socket_connect_timeout=2.0
        )
        # Stop requests and their replies wait on a connection longer than any socket timeout:
        # their own client, which checks an idle connection is alive instead.
        self.waiting: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=None, socket_connect_timeout=2.0, health_check_interval=10
        )
        self._slots: dict[int, set[str]] = {}  # this process's held slots, per user
        self._live: dict[str, tuple[int, str]] = {}  # this process's runs: id -> (user, conv)
        self._background: set[asyncio.Task[Any]] = set()

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
    def run_started(self, run_id: str, user_id: int, conversation_id: str) -> None:
        self._live[run_id] = (user_id, conversation_id)
        self._later(self._index(run_id, user_id, conversation_id), "index a run")

    async def _index(self, run_id: str, user_id: int, conversation_id: str) -> None:
        key = self.live_key(user_id, conversation_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, run_id, self.process_id)
            pipe.pexpire(key, self._lease_ms * 3)
            await pipe.execute()

    def run_ended(self, run_id: str, user_id: int, conversation_id: str) -> None:
        self._live.pop(run_id, None)
        key = self.live_key(user_id, conversation_id)
        self._later(self.redis.hdel(key, run_id), "unindex a run")

    async def stop_elsewhere(self, user_id: int, conversation_id: str, timeout_s: float) -> int:
        try:
            owners = await self.redis.hgetall(self.live_key(user_id, conversation_id))  # type: ignore[misc]
            others = {o.decode() for o in owners.values()} - {self.process_id}
            others = {o for o in others if await self.redis.exists(self.proc_key(o))}
            if not others:
                return 0
            reply = f"{PREFIX}:reply:{uuid.uuid4().hex}"
            request = json.dumps(
                {"op": "stop", "user": user_id, "conversation": conversation_id, "reply": reply}
            )
            for owner in others:
                await self.redis.publish(f"{PREFIX}:control:{owner}", request)
            stopped, deadline = 0, time.monotonic() + timeout_s
            for _ in others:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                async with asyncio.timeout(left + 2):  # a Redis gone quiet ends the wait too
                    answer = await self.waiting.blpop([reply], timeout=max(1, round(left)))  # type: ignore[misc]
                if answer is None:
                    break
                stopped += int(answer[1])
            return stopped
        except (RedisError, TimeoutError) as exc:
            log.warning("stop on other processes: Redis unreachable (%s)", type(exc).__name__)
            return 0

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
    async def running(self, stop_local: StopLocal, reaper: Reaper) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(self._heartbeat(), name="cluster-heartbeat"),
            asyncio.create_task(self._control(stop_local), name="cluster-control"),
            asyncio.create_task(self._reap(reaper), name="cluster-reaper"),
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
            pipe.set(self.proc_key(self.process_id), json.dumps({"since": time.time()}), px=lease)
            for user_id, slots in self._slots.items():
                pipe.eval(RENEW, 1, self.slots_key(user_id), lease, *slots)
            for run_id, (user_id, conversation_id) in self._live.items():
                key = self.live_key(user_id, conversation_id)
                pipe.hset(key, run_id, self.process_id)  # again, if Redis restarted empty
                pipe.pexpire(key, lease * 3)
            await pipe.execute()

    async def _control(self, stop_local: StopLocal) -> None:
        """Answer other processes' Stop requests for this process's runs."""
        channel = f"{PREFIX}:control:{self.process_id}"
        while True:
            try:
                async with self.waiting.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel)
                    async for message in pubsub.listen():
                        await self._answer(message, stop_local)
            except RedisError as exc:
                log.warning("Stop requests: Redis unreachable (%s)", type(exc).__name__)
                await asyncio.sleep(min(5.0, self.lease_s / 3))  # then subscribe again

    async def _answer(self, message: dict[str, Any], stop_local: StopLocal) -> None:
        try:
            request = json.loads(message["data"])
            user_id, conversation_id = int(request["user"]), str(request["conversation"])
            reply = str(request["reply"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed control message")
            return
        if request.get("op") != "stop" or not reply.startswith(f"{PREFIX}:reply:"):
            return
        stopped = await stop_local(user_id, conversation_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(reply, stopped)
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
