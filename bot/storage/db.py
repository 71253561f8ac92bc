"""The database engine and schema migrations."""

from __future__ import annotations

import asyncio
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from bot.storage.sqlite_driver import one_trip_dbapi

if TYPE_CHECKING:
    from alembic.config import Config

# Applied to every new SQLite connection: WAL lets readers run while an answer is being
# checkpointed; NORMAL is durable enough with WAL; SQLite leaves foreign keys off unless
# asked; a writer waits for the lock instead of failing at once with "database is locked".
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)

# Where migrations/ lives in a source checkout that is not installed (see migrations_path).
_SOURCE_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """Create an async engine for ``url``; SQLite gets its directory, pragmas and driver.

    ``options`` go to ``create_async_engine`` unchanged (a ``module`` there replaces the
    SQLite driver).
    """
    parsed = make_url(url)
    database_file = _sqlite_file(parsed)
    if database_file is not None:
        database_file.parent.mkdir(parents=True, exist_ok=True)
    if parsed.drivername == "sqlite+aiosqlite":
        # One trip to aiosqlite's thread per statement instead of four or five.
        options.setdefault("module", one_trip_dbapi())
    engine = create_async_engine(parsed, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
    return engine


def _sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names; None for other databases, memory and ``file:`` URIs."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if url.query.get("uri"):
        return None
    return Path(database)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def migrations_path() -> Path:
    """The directory holding ``env.py`` and ``versions/``.

    Installed, ``migrations/`` is the package ``bot.migrations``; run from a source checkout
    without installing, that package does not exist and the repository's directory is used.
    """
    try:
        location = files("bot.migrations")
    except ModuleNotFoundError:
        return _SOURCE_MIGRATIONS
    # A regular package on disk; alembic needs a real directory, not a zip member.
    return Path(str(location))


async def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest migration."""
    # alembic's API is synchronous and env.py runs its own event loop with asyncio.run,
    # which cannot nest inside ours: give it a thread.
    await asyncio.to_thread(_upgrade, url)


def alembic_config(url: str) -> Config:
    """An alembic configuration for ``url`` that does not depend on the working directory."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    # Passed as an attribute, not a main option: ConfigParser would treat "%" in a
    # URL-encoded password as interpolation.
    config.attributes["database_url"] = url
    return config


def _upgrade(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")
