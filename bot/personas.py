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
    if name is not None and name.startswith(CUSTOM_PREFIX):
        prompt = await store.persona_prompt(name)
        if prompt is not None:
            return ChatPersona(name, prompt, custom=True)
    persona = config.persona(name)
    return ChatPersona(persona.name, persona.prompt)
