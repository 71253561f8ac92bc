"""Fixtures: the fake Bot API, the fake provider, a database, and the running bot."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from bot.handlers.context import BotApplication
from bot.runner import running
from tests.factories import TOKEN, make_config
from tests.fakes.databases import (
    PostgresUnavailable,
    database_url,  # noqa: F401 - re-exported fixture
    engine,  # noqa: F401 - re-exported fixture
    postgres_database,
    postgres_missing,
    postgres_url,  # noqa: F401 - re-exported fixture
    sqlite_url,
    store,  # noqa: F401 - re-exported fixture
)
from tests.fakes.http import session  # noqa: F401 - re-exported fixture
from tests.fakes.provider import FakeProvider
from tests.fakes.redis_server import redis_space  # noqa: F401 - re-exported fixture
from tests.fakes.telegram import FakeTelegram

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    """Fail any test that tries to leave this machine."""
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (
        host.startswith(("127.", "/")) or host in ("::1", "localhost")
    ):
        pytest.fail(f"network access outside 127.0.0.1 attempted: {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    """The fake Telegram Bot API server."""
    async with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    """The fake OpenAI-compatible provider."""
    async with FakeProvider() as fake:
        yield fake


DATABASES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the bot of a ``both_databases`` test on SQLite, then on PostgreSQL."""
    if not metafunc.definition.get_closest_marker("both_databases"):
        return
    if "bot_database" not in metafunc.fixturenames:
        # Without the bot's configuration the mark would silently test SQLite alone.
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: both_databases needs config_for")
    metafunc.parametrize("bot_database", DATABASES, indirect=True, ids=DATABASES)


@pytest.fixture
async def bot_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The bot's database URL: a SQLite file, or (``both_databases`` tests) PostgreSQL too."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield sqlite_url(tmp_path)
        return
    async with AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(postgres_database())
        except PostgresUnavailable as exc:
            postgres_missing(exc)
        yield url


@pytest.fixture
def config_for(
    telegram: FakeTelegram, provider: FakeProvider, bot_database: str
) -> Callable[..., Config]:
    """Build a configuration for the fakes, with section overrides."""

    def build(**sections: Any) -> Config:
        return make_config(
            telegram_base_url=telegram.base_url,
            telegram_file_url=telegram.base_file_url,
            provider_base_url=provider.base_url,
            database=bot_database,
            **sections,
        )

    return build


@pytest.fixture
def config(config_for: Callable[..., Config]) -> Config:
    """The default test configuration."""
    return config_for()


@pytest.fixture
def start_bot() -> Callable[[Config], AbstractAsyncContextManager[BotApplication]]:
    """Start the real bot (polling the fake) for the duration of an ``async with``."""
    return running


@pytest.fixture
async def bot(config: Config) -> AsyncIterator[BotApplication]:
    """The real bot, running against the fakes."""
    async with running(config) as application:
        yield application
