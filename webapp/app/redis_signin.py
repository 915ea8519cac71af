"""Sign-in lockouts over every process (REDIS_URL): failed sign-ins per key in Redis.

The key is a name at an address, or an address (webapp/app/auth.py); Redis holds a sorted set
of its failures' times under `parley:signin:{hash}`, on Redis's clock, expiring with the
lockout. Sign-in is rare, so the calls are short blocking ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid

import redis as redis_sync
from redis.exceptions import RedisError

from webapp.app.auth import LoginThrottle
from webapp.app.redis_cluster import PREFIX

log = logging.getLogger(__name__)

# KEYS[1] one key's failures; ARGV: the lockout in ms, the most failures allowed.
# Returns the ms until the key may try again (0: now).
SIGN_IN_WAIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lockout, most = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - lockout)
if redis.call('ZCARD', KEYS[1]) < most then return 0 end
local nth = redis.call('ZREVRANGE', KEYS[1], most - 1, most - 1, 'WITHSCORES')
return math.max(0, tonumber(nth[2]) + lockout - now)
"""
# KEYS[1] one key's failures; ARGV: the lockout in ms, a unique member.
SIGN_IN_FAILED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 0
"""


class SharedLoginThrottle(LoginThrottle):
    """LoginThrottle over every process: the failures per key (a name at an address, or an
    address) are a sorted set in Redis, on Redis's clock. Sign-in is rare, so the calls are
    short blocking ones; when Redis does not answer, this process's own count decides (the
    throttle is never off)."""

    def __init__(self, url: str, max_failures: int = 5, lockout_s: float = 300.0) -> None:
        super().__init__(max_failures, lockout_s)
        self.redis = redis_sync.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    @staticmethod
    def _key(key: str) -> str:
        return f"{PREFIX}:signin:{hashlib.sha256(key.encode()).hexdigest()[:32]}"

    @property
    def _lockout_ms(self) -> int:
        return max(1, int(self.lockout_s * 1000))

    def retry_after(self, key: str) -> float:
        try:
            wait = self.redis.eval(
                SIGN_IN_WAIT, 1, self._key(key), self._lockout_ms, self.max_failures
            )
        except RedisError as exc:
            log.warning("sign-in throttle: Redis unreachable (%s)", type(exc).__name__)
            return super().retry_after(key)
        return max(float(wait) / 1000, super().retry_after(key))  # type: ignore[arg-type]

    def failed(self, key: str) -> None:
        super().failed(key)
        member = f"{time.time_ns()}:{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(RedisError):
            self.redis.eval(SIGN_IN_FAILED, 1, self._key(key), self._lockout_ms, member)

    def succeeded(self, key: str) -> None:
        super().succeeded(key)
        with contextlib.suppress(RedisError):
            self.redis.delete(self._key(key))

    def forgive_one(self, key: str) -> None:
        super().forgive_one(key)
        with contextlib.suppress(RedisError):
            self.redis.zpopmax(self._key(key))
