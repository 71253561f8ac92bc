"""The migrations build, from a blank database, exactly the schema the models declare."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import warnings
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SAWarning

from bot.storage.db import alembic_config, create_engine, migrate, migrations_path
from bot.storage.migrator import MigrationError, migrate_apart
from bot.storage.models import Base
from bot.storage.store import Store
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
        "question_id",
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
    with warnings.catch_warnings():
        # SQLite's reflection cannot read an index on expressions; the tests of the
        # conversation order check that one is there and used.
        warnings.filterwarnings(
            "ignore", "Skipped unsupported reflection of expression-based index", SAWarning
        )
        warnings.filterwarnings("ignore", "autogenerate skipping .* expression-based index")
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
    assert await _version(url) == "0005"


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


# Rows as revision 0004 stored them: "first" answered live; "second" and "third" pending at
# a restart, then answered after it (each answer stored with its question's resumed time);
# a /complete; and a /retry of the third.
_RESUMED_AT = ("2026-11-30 10:00:01", "2026-11-30 10:00:02")
_ROWS_OF_0004 = (
    # id, role, kind, content, status, created_at, updated_at
    (1, "user", "chat", "first", "complete", "2026-11-30 09:00:00", "2026-11-30 09:00:00"),
    (2, "assistant", "chat", "one", "complete", "2026-11-30 09:00:00", "2026-11-30 09:00:01"),
    (3, "user", "chat", "second", "resumed", "2026-11-30 09:59:00", _RESUMED_AT[0]),
    (4, "user", "chat", "third", "resumed", "2026-11-30 09:59:01", _RESUMED_AT[1]),
    (5, "assistant", "chat", "two", "complete", _RESUMED_AT[0], _RESUMED_AT[0]),
    (6, "assistant", "chat", "three", "replaced", _RESUMED_AT[1], _RESUMED_AT[1]),
    (7, "user", "completion", "Once upon", "complete", "2026-11-30 10:01", "2026-11-30 10:01"),
    (8, "assistant", "completion", "a time", "complete", "2026-11-30 10:01", "2026-11-30 10:01"),
    (9, "assistant", "chat", "three again", "complete", "2026-11-30 10:02", "2026-11-30 10:02"),
)


async def _execute(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Run ``statements`` in one transaction; the rows the last one returns, if any."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                result = await connection.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


async def _index_names(url: str) -> set[object]:
    """The indexes of the messages table, from the catalogue (reflection skips expressions)."""
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"
        if url.startswith("sqlite")
        else "SELECT indexname FROM pg_indexes WHERE tablename = 'messages'"
    )
    return {name for (name,) in await _execute(url, query)}


async def test_revision_0005_links_stored_answers_to_their_questions_and_goes_back_down(
    database_url: str,
) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.upgrade, config, "0004")
    await _execute(
        database_url,
        "INSERT INTO chats (id, type, created_at, updated_at)"
        " VALUES (1, 'private', '2026-11-30 09:00:00', '2026-11-30 09:00:00')",
        "INSERT INTO conversations (id, chat_id, persona, started_at)"
        " VALUES (1, 1, 'default', '2026-11-30 09:00:00')",
        *(
            "INSERT INTO messages (id, conversation_id, role, kind, content, status,"
            " telegram_chat_id, created_at, updated_at)"
            f" VALUES ({n}, 1, '{role}', '{kind}', '{content}', '{status}', 1,"
            f" '{created}', '{updated}')"
            for n, role, kind, content, status, created, updated in _ROWS_OF_0004
        ),
    )

    await asyncio.to_thread(command.upgrade, config, "0005")

    assert await _execute(
        database_url, "SELECT id, question_id FROM messages WHERE role = 'assistant' ORDER BY id"
    ) == [(2, 1), (5, 3), (6, 4), (8, 7), (9, 4)]
    indexes = await _index_names(database_url)
    assert "ix_messages_conversation_order" in indexes
    assert "ix_messages_conversation_id_id" not in indexes
    engine = create_engine(database_url)
    try:
        history = await Store(engine).history(1, limit=10)
    finally:
        await engine.dispose()
    assert [m.content for m in history] == ["first", "one", "second", "two", "third", "three again"]

    await asyncio.to_thread(command.downgrade, config, "0004")

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(_columns)
    finally:
        await engine.dispose()
    assert "question_id" not in columns["messages"]
    assert await _index_names(database_url) >= {"ix_messages_conversation_id_id"}
    assert "ix_messages_conversation_order" not in await _index_names(database_url)
    assert await _execute(database_url, "SELECT count(*) FROM messages") == [(9,)]
