"""The Store's model choices on real databases: a chat's chat model and the admins' defaults."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.models import ModelDefault
from bot.storage.store import Store

CHAT = 100
OTHER_CHAT = 200
ADMIN = 9


async def test_a_chat_follows_the_default_until_it_chooses_a_model(store: Store) -> None:
    await store.ensure_chat(CHAT, "private")
    await store.ensure_chat(OTHER_CHAT, "group")
    assert await store.chat_model(CHAT) is None
    await store.set_chat_model(CHAT, "gpt-4o")
    assert await store.chat_model(CHAT) == "gpt-4o"
    assert await store.chat_model(OTHER_CHAT) is None
    await store.set_chat_model(CHAT, None)
    assert await store.chat_model(CHAT) is None


async def test_choosing_a_model_for_an_unknown_chat_is_an_error(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.set_chat_model(CHAT, "gpt-4o")
    assert await store.chat_model(CHAT) is None


async def test_setting_a_default_twice_keeps_one_row_with_the_latest_choice(
    store: Store, engine: AsyncEngine
) -> None:
    assert await store.model_defaults() == {}
    await store.set_model_default("chat", "gpt-4", set_by=ADMIN)
    await store.set_model_default("chat", "gpt-4o", set_by=ADMIN + 1)
    await store.set_model_default("images", "dall-e-3", set_by=None)
    assert await store.model_defaults() == {"chat": "gpt-4o", "images": "dall-e-3"}
    async with engine.connect() as connection:
        rows = (
            await connection.execute(select(ModelDefault.capability, ModelDefault.set_by))
        ).all()
    assert sorted(rows) == [("chat", ADMIN + 1), ("images", None)]


async def test_resetting_a_default_removes_only_that_capability(store: Store) -> None:
    await store.set_model_default("chat", "gpt-4", set_by=ADMIN)
    await store.set_model_default("completions", "davinci", set_by=ADMIN)
    assert await store.reset_model_default("chat") is True
    assert await store.reset_model_default("chat") is False
    assert await store.model_defaults() == {"completions": "davinci"}


async def test_model_choices_reads_the_chat_model_and_the_default_together(store: Store) -> None:
    assert await store.model_choices(CHAT, "chat") == (None, None)
    await store.ensure_chat(CHAT, "private")
    await store.set_model_default("chat", "gpt-4", set_by=ADMIN)
    assert await store.model_choices(CHAT, "chat") == (None, "gpt-4")
    await store.set_chat_model(CHAT, "claude-3")
    assert await store.model_choices(CHAT, "chat") == ("claude-3", "gpt-4")
    assert await store.model_choices(CHAT, "images") == ("claude-3", None)
