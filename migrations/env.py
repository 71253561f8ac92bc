"""Alembic environment: runs the migrations on an async engine.

The database URL comes, in this order, from ``bot.storage.db.migrate()`` (the
``database_url`` attribute), the ``DATABASE_URL`` environment variable, or
``sqlalchemy.url`` in alembic.ini.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from bot.storage.db import create_engine
from bot.storage.models import Base

# The advisory lock key that serialises migrations of one database (any fixed 64-bit number).
MIGRATION_LOCK = 7_305_113_940_201

config = context.config
target_metadata = Base.metadata

# Only the alembic CLI has an ini file with logging settings; migrate() called from the bot
# must leave the bot's logging alone.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = (
        config.attributes.get("database_url")
        or os.environ.get("DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise RuntimeError("no database URL: set DATABASE_URL or sqlalchemy.url in alembic.ini")
    return str(url)


def is_sqlite(url_or_dialect: str) -> bool:
    return url_or_dialect.startswith("sqlite")


def run_migrations_offline() -> None:
    """Emit the SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=is_sqlite(url),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    # The bot's own engine factory, so the CLI also creates the SQLite file's directory and
    # switches the file to WAL; NullPool because the engine lives for this run only.
    engine = create_engine(database_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # Instances starting together take turns; the later ones find the schema
                # current. The lock ends with the transaction the migrations run in.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
