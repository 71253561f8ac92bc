"""Which persona a chat uses: one from the configuration, or the chat's own custom prompt."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Config
from bot.storage.store import Store

# Custom personas are stored per chat under this prefix, apart from the configured names.
CUSTOM_PREFIX = "chat:"


@dataclass(frozen=True, slots=True)
class ChatPersona:
    """The persona in force in a chat."""

    name: str
    prompt: str
    custom: bool = False


def custom_name(chat_id: int) -> str:
    """The stored name of ``chat_id``'s custom persona."""
    return f"{CUSTOM_PREFIX}{chat_id}"


async def chat_persona(config: Config, store: Store, chat_id: int) -> ChatPersona:
    """The chat's chosen persona, falling back to the default one."""
    name = await store.chat_persona(chat_id)
    custom_prompt = None
    if name is not None and name.startswith(CUSTOM_PREFIX):
        custom_prompt = await store.persona_prompt(name)
    return persona_of(config, name, custom_prompt)


def persona_of(config: Config, name: str | None, stored_prompt: str | None) -> ChatPersona:
    """The persona in force for a chat that chose ``name`` (None for the default).

    ``stored_prompt`` is the prompt stored under ``name``; only a custom persona uses it,
    and a custom one that lost its prompt falls back to the default.
    """
    if name is not None and name.startswith(CUSTOM_PREFIX) and stored_prompt is not None:
        return ChatPersona(name, stored_prompt, custom=True)
    persona = config.persona(name)
    return ChatPersona(persona.name, persona.prompt)
