"""Which model serves /complete, /edit and /retry in a chat."""

from __future__ import annotations

from typing import Literal

from bot.services import Services

TextCapability = Literal["chat", "completions", "edits"]


async def model_for(services: Services, chat_id: int, capability: TextCapability) -> str:
    """The model serving ``capability`` in ``chat_id``; "" for edits means the chat model.

    Every handler of these commands asks here, so the choice is made in one place.
    """
    models = services.config.models
    match capability:
        case "chat":
            return models.chat
        case "completions":
            return models.completions
        case "edits":
            return models.edits
