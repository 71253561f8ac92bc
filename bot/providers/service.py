"""Routing: which provider serves a model, and moving on when one fails before answering."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Sequence

import aiohttp

from bot.config import Config, ProviderConfig
from bot.errors import ProviderError
from bot.providers.base import (
    ChatRequest,
    ModelInfo,
    Provider,
    StreamEvent,
    StreamStart,
    TextDelta,
)
from bot.providers.openai_compat import OpenAICompatProvider

logger = logging.getLogger(__name__)

# Seed 003 caps the `user` field at 64 characters; a hex digest prefix stays well inside.
_USER_TAG_LENGTH = 32


def user_tag(telegram_user_id: int) -> str:
    """A stable, non-reversible id for a Telegram user, for the providers' `user` field."""
    digest = hashlib.sha256(f"telegram:{telegram_user_id}".encode()).hexdigest()
    return digest[:_USER_TAG_LENGTH]


def build_provider(config: ProviderConfig, session: aiohttp.ClientSession) -> Provider:
    """The adapter for one configured provider."""
    match config.kind:
        case "openai":
            return OpenAICompatProvider(config, session)


class ProviderService:
    """The configured providers, and the one way handlers reach them."""

    def __init__(self, providers: Sequence[tuple[ProviderConfig, Provider]]) -> None:
        self._providers = list(providers)

    @classmethod
    def from_config(cls, config: Config, session: aiohttp.ClientSession) -> ProviderService:
        """Build an adapter for every provider in ``config`` over one shared session."""
        return cls([(p, build_provider(p, session)) for p in config.providers])

    def providers_for(self, model: str) -> list[Provider]:
        """Providers that serve ``model``: those listing it first, then those listing nothing."""
        listing = [p for c, p in self._providers if model in c.models]
        open_ended = [p for c, p in self._providers if not c.models]
        return listing + open_ended or [p for _, p in self._providers]

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream an answer, trying the next provider on a retryable error before any text."""
        candidates = self.providers_for(request.model)
        for position, provider in enumerate(candidates):
            produced_text = False
            try:
                yield StreamStart(provider.name, request.model)
                async for event in provider.stream_chat(request):
                    produced_text = produced_text or isinstance(event, TextDelta)
                    yield event
            except ProviderError as exc:
                last = position == len(candidates) - 1
                if produced_text or not exc.retryable or last:
                    raise
                logger.warning(
                    "provider %s failed before answering (%s); trying the next",
                    provider.name,
                    exc.kind,
                )
                continue
            return

    async def list_models(self) -> dict[str, list[ModelInfo]]:
        """The models each provider reports, by provider name."""
        return {provider.name: await provider.list_models() for _, provider in self._providers}

    async def aclose(self) -> None:
        """Release every adapter."""
        for _, provider in self._providers:
            await provider.aclose()
