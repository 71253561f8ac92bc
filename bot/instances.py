"""What several instances of one bot share: conversation locks, Stop presses, flood budget.

On PostgreSQL, answers of one conversation are serialized across instances by advisory
locks and Stop presses travel between them by ``NOTIFY``; with ``redis.url`` set, the flood
budget is shared through Redis. On SQLite (one instance only) all of it stays in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

from bot.config import Config
from bot.errors import ConfigError
from bot.inflight import ConversationKey, ConversationLocks, StopSignals
from bot.stop_relay import StopRelay
from bot.storage.advisory import AdvisoryLocks, conversation_lock_id
from bot.streaming.shared_budget import SharedBudget, namespace


@dataclass
class Shared:
    """The coordination parts of one instance."""

    conversations: ConversationLocks = field(default_factory=ConversationLocks)
    stops: StopSignals = field(default_factory=StopSignals)
    stop_relay: StopRelay | None = None
    budget: SharedBudget | None = None


def lock_id(key: ConversationKey) -> int:
    """The advisory lock of a conversation key."""
    return conversation_lock_id(*key)


@asynccontextmanager
async def shared_parts(config: Config) -> AsyncIterator[Shared]:
    """Open what ``config`` calls for; close it all on exit."""
    shared = Shared()
    async with AsyncExitStack() as stack:
        url = config.database.url
        if make_url(url).get_backend_name() == "postgresql":
            locks = AdvisoryLocks(url, connections=config.database.lock_connections)
            stack.push_async_callback(locks.aclose)
            await locks.start()
            shared.conversations = ConversationLocks(locks, lock_id)
            relay = StopRelay(url, shared.stops)
            stack.push_async_callback(relay.aclose)
            await relay.start()
            shared.stop_relay = relay
        if config.redis.url:
            shared.budget = _redis_budget(config)
            stack.push_async_callback(shared.budget.aclose)
        yield shared


def _redis_budget(config: Config) -> SharedBudget:
    try:
        import redis  # noqa: F401 - only to say clearly that it is missing
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "redis.url", "needs the redis package: pip install 'tg-llm-bot[redis]'"
        ) from exc
    return SharedBudget.from_url(
        config.redis.url,
        namespace(config.redis.prefix, config.telegram.token),
        global_per_second=config.streaming.global_per_second,
    )
