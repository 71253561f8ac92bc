"""The migrations build, from a blank database, exactly the schema the models declare."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from bot.storage.db import alembic_config, create_engine, migrate, migrations_path
from bot.storage.migrator import MigrationError, migrate_apart
from bot.storage.models import Base
from tests.fakes.databases import sqlite_url

EXPECTED_COLUMNS = {
    "chats": {"id", "type", "title", "language", "persona", "model", "created_at", "updated_at"},
    "model_defaults": {"capability", "model", "set_by", "updated_at"},
    "quota_usage": {"scope", "subject", "period", "requests", "tokens", "reserved", "updated_at"},
    "quota_holds": {"id", "tokens", "counters", "expires_at"},
    "personas": {"name", "description", "prompt", "updated_at"},
    "conversations": {
        "id",
        "chat_id",
        "thread_id",
        "user_id",
        "persona",
        "started_at",
        "ended_at",
        "provider_session",
        "provider_session_owner",
    },
    "messages": {
        "id",
        "conversation_id",
        "role",
        "kind",
        "content",
        "status",
        "user_id",
        "telegram_chat_id",
        "telegram_message_id",
        "telegram_message_ids",
        "model",
        "provider",
        "prompt_tokens",
        "completion_tokens",
        "usage_estimated",
        "error_kind",
        "created_at",
        "updated_at",
    },
}


def _columns(connection: Connection) -> dict[str, set[str]]:
    inspector = inspect(connection)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
    }


def _schema_differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def _version(url: str) -> str | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    return None if version is None else str(version)


async def test_migrate_creates_every_table_and_column_in_a_blank_sqlite_file(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path / "not" / "yet" / "there")

    await migrate(url)

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(_columns)
    finally:
        await engine.dispose()
    assert columns == {**EXPECTED_COLUMNS, "alembic_version": {"version_num"}}


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    await migrate(database_url)

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_schema_differences)
    finally:
        await engine.dispose()
    assert differences == []


async def test_migrating_twice_changes_nothing_and_keeps_the_data(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    await migrate(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO chats (id, type, created_at, updated_at)"
                    " VALUES (1, 'private', '2024-01-01 00:00:00', '2024-01-01 00:00:00')"
                )
            )

        await migrate(url)

        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM chats")) == 1
    finally:
        await engine.dispose()
    assert await _version(url) == "0004"


async def test_migrated_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)

    await migrate(url)

    # Read with the standard library, without our pragmas: WAL is a property of the file.
    with sqlite3.connect(tmp_path / "bot.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_every_sqlite_connection_enforces_foreign_keys_and_waits_for_locks(
    tmp_path: Path,
) -> None:
    engine = create_engine(sqlite_url(tmp_path))
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: await connection.scalar(text(f"PRAGMA {name}"))
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        await engine.dispose()
    # synchronous=NORMAL reads back as 1.
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 5000,
    }


async def test_downgrade_to_base_removes_every_table(database_url: str) -> None:
    await migrate(database_url)

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "base")

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(_columns)
    finally:
        await engine.dispose()
    assert set(columns) == {"alembic_version"}


def test_revisions_are_numbered_in_one_line_and_named_by_their_number() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    revisions = list(reversed(list(scripts.walk_revisions())))

    assert [r.revision for r in revisions] == [f"{n:04d}" for n in range(1, len(revisions) + 1)]
    for revision in revisions:
        assert revision.path is not None
        assert re.fullmatch(rf"{revision.revision}_\w+\.py", Path(revision.path).name)
    assert (migrations_path() / "env.py").is_file()


async def test_migrating_in_a_child_process_brings_the_database_to_the_newest_revision(
    database_url: str,
) -> None:
    await migrate_apart(database_url)

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_schema_differences)
    finally:
        await engine.dispose()
    assert differences == []
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert await _version(database_url) == head


async def test_a_migration_that_fails_in_the_child_process_raises_with_its_reason(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")

    with pytest.raises(MigrationError, match="exit status"):
        await migrate_apart(sqlite_url(blocker / "inside"))
