"""Throw-away databases for tests: a SQLite file in tmp_path, or a fresh PostgreSQL database.

``database_url`` runs a test once on each; the PostgreSQL run is skipped when no server
answers. ``TEST_POSTGRES_URL`` (a maintenance database the role may CREATE DATABASE from)
overrides the default candidates ``postgres@`` then ``root@127.0.0.1:5432/test``;
``BOT_TEST_REQUIRE_POSTGRES=1`` turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bot.storage.db import create_engine, migrate
from bot.storage.store import Store

POSTGRES_ADDRESS = "127.0.0.1:5432"
POSTGRES_CANDIDATES = (
    f"postgresql+asyncpg://postgres@{POSTGRES_ADDRESS}/test",
    f"postgresql+asyncpg://root@{POSTGRES_ADDRESS}/test",
)
CONNECT_TIMEOUT = 5.0


class PostgresUnavailable(Exception):
    """No PostgreSQL server accepted any of the candidate URLs."""


def sqlite_url(directory: Path) -> str:
    """The URL of a SQLite file (not yet created) in ``directory``."""
    return f"sqlite+aiosqlite:///{directory / 'bot.db'}"


# Found once per test session: the maintenance URL that works, or why none does.
_maintenance: URL | PostgresUnavailable | None = None


async def _maintenance_url() -> URL:
    global _maintenance  # noqa: PLW0603 - a per-session cache; probing costs a timeout
    if _maintenance is None:
        _maintenance = await _probe()
    if isinstance(_maintenance, PostgresUnavailable):
        raise _maintenance
    return _maintenance


async def _probe() -> URL | PostgresUnavailable:
    override = os.environ.get("TEST_POSTGRES_URL")
    candidates = (override,) if override else POSTGRES_CANDIDATES
    problems: list[str] = []
    for candidate in candidates:
        url = make_url(candidate).set(drivername="postgresql+asyncpg")
        engine = create_async_engine(
            url, poolclass=NullPool, connect_args={"timeout": CONNECT_TIMEOUT}
        )
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (OSError, TimeoutError, SQLAlchemyError) as exc:
            problems.append(f"{url.render_as_string(hide_password=True)}: {exc!r}"[:300])
        else:
            return url
        finally:
            await engine.dispose()
    return PostgresUnavailable("; ".join(problems))


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """Create a uniquely named empty database, yield its URL, and drop it afterwards.

    Raises ``PostgresUnavailable`` when no server answers.
    """
    maintenance = await _maintenance_url()
    name = f"test_bot_{uuid.uuid4().hex[:16]}"
    # CREATE/DROP DATABASE cannot run inside a transaction.
    admin = create_async_engine(maintenance, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield maintenance.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                # FORCE: a test that failed may have left a connection open.
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def postgres_missing(exc: PostgresUnavailable) -> NoReturn:
    """Skip the test for want of PostgreSQL, or fail it where PostgreSQL is required."""
    reason = f"PostgreSQL not reachable at {POSTGRES_ADDRESS}: {exc}"
    # CI sets this so that the PostgreSQL path can never go silently untested.
    if os.environ.get("BOT_TEST_REQUIRE_POSTGRES"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database, once as a SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    async with AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(postgres_database())
        except PostgresUnavailable as exc:
            postgres_missing(exc)
        yield url


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """An empty PostgreSQL database, for what only PostgreSQL has (advisory locks, NOTIFY)."""
    async with AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(postgres_database())
        except PostgresUnavailable as exc:
            postgres_missing(exc)
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database (each test runs on SQLite and on PostgreSQL), for store tests."""
    await migrate(database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> Store:
    """The Store on ``engine``."""
    return Store(engine)


async def rows_alone(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a session of its own (autocommit, no pool) and return its rows."""
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql))]
    finally:
        await engine.dispose()


def record_cache_use(engine: AsyncEngine) -> list[tuple[str, CacheStats]]:
    """Each statement the engine runs from now on (its first word), with whether it was
    compiled already."""
    used: list[tuple[str, CacheStats]] = []

    def record(*args: Any) -> None:
        statement, context = args[2], args[4]
        used.append((statement.split()[0].upper(), context.cache_hit))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return used
