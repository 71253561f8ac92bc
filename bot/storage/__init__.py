"""Persistence: the engine and migrations (db), the tables (models), the queries (store)."""

from bot.storage.db import create_engine, migrate
from bot.storage.store import MessageStatus, Store, StoredMessage

__all__ = ["MessageStatus", "Store", "StoredMessage", "create_engine", "migrate"]
