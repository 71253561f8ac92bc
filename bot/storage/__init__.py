"""Persistence: the engine and migrations (db), the tables (models), what is stored as plain
values (records), the queries (store, with turn_begin and history for the busiest ones)."""

from bot.storage.db import create_engine, migrate
from bot.storage.records import MessageStatus, StoredMessage
from bot.storage.store import Store

__all__ = ["MessageStatus", "Store", "StoredMessage", "create_engine", "migrate"]
