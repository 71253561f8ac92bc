"""The local Redis for tests of the shared flood budget, with a fresh key prefix per test.

Tests using ``redis_space`` are skipped when no Redis answers at ``TEST_REDIS_URL``
(default ``redis://127.0.0.1:6379/0``); ``BOT_TEST_REQUIRE_REDIS=1`` turns the skip into a
failure, so CI can never leave the shared budget untested.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CONNECT_TIMEOUT = 2.0


@dataclass(frozen=True)
class RedisSpace:
    """A Redis URL and a key prefix no other test uses."""

    url: str
    prefix: str


@pytest.fixture
async def redis_space() -> AsyncIterator[RedisSpace]:
    """The local Redis with a fresh prefix; the prefix's keys are deleted afterwards."""
    client = Redis.from_url(
        REDIS_URL, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
    )
    try:
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            reason = f"Redis not reachable at {REDIS_URL}: {exc!r}"
            if os.environ.get("BOT_TEST_REQUIRE_REDIS"):
                pytest.fail(reason)
            pytest.skip(reason)
        prefix = f"test-{uuid.uuid4().hex[:12]}"
        yield RedisSpace(REDIS_URL, prefix)
        # Keys are "{prefix:bot id}:...": braces keep a cluster's slot, not a glob pattern.
        keys = [key async for key in client.scan_iter(match=f"{{{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
