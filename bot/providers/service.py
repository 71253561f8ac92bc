"""Routing: which provider serves a model, retries, failover, and each provider's health.

A request goes to the providers that serve its model, in the configured order. Before any
part of the answer (text or a tool call) reached the caller:

The same holds for every capability: streamed ones (chat, completions) and one-shot ones
(edits, images), where "before any part of the answer" is simply "before it returned". An
adapter without the endpoint raises ``Unsupported``, which moves on like a provider fault.

* a retryable error (``RateLimited``, ``Unavailable``, ``ProviderTimeout``, ``StreamCut``), or
  a fault of the provider rather than of the request (``AuthError``, ``QuotaError``,
  ``ModelNotFound``), moves on to the next provider;
* on the last provider, a retryable error is retried up to the provider's ``retries`` times
  after ``BACKOFF_BASE`` seconds, doubling each time, or after the error's ``retry_after``
  when it has one; a wait longer than ``MAX_RETRY_WAIT`` gives up at once. A timeout is not
  retried on the same provider: the user has already waited the whole timeout for it.

Once part of the answer was yielded nothing is retried: the error propagates, and the caller
shows the partial answer with a note. Other errors (the request itself is at fault: too
long, refused, malformed) propagate at once.

A provider that failed ``FAILURES_BEFORE_COOLDOWN`` times in a row with retryable errors is
skipped for ``COOLDOWN_SECONDS`` after its last failure, unless every provider of the model
is cooling down; one success resets it (``ProviderHealth``).

Providers that keep the conversation themselves (the ``wrapper`` kind) name it with a
``ProviderSession`` event. The caller stores it with the name of the provider of the last
``StreamStart`` and passes the stored sessions back as ``stream_chat(request, sessions)``;
each attempt gets only its own provider's session in ``request.session``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from enum import Enum
from typing import TypeVar

import aiohttp

from bot.config import Config, ProviderConfig
from bot.errors import (
    AuthError,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    QuotaError,
    Unavailable,
    Unsupported,
)
from bot.providers.anthropic import AnthropicProvider
from bot.providers.base import (
    ChatRequest,
    CompletionRequest,
    EditRequest,
    GeneratedImage,
    ImageEditRequest,
    ImageRequest,
    ModelInfo,
    Provider,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
)
from bot.providers.catalogue import ModelCatalogue, route_order
from bot.providers.http import describe
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.wrapper import WrapperProvider

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Seed 003 caps the `user` field at 64 characters; a hex digest prefix stays well inside.
_USER_TAG_LENGTH = 32

BACKOFF_BASE = 0.5
"""Seconds before the first retry of the last provider; each further retry waits twice as long."""

MAX_RETRY_WAIT = 20.0
"""The longest wait before a retry; a provider asking for more (Retry-After) is given up on."""

FAILURES_BEFORE_COOLDOWN = 3
"""Retryable failures in a row after which a provider is skipped for a while."""

COOLDOWN_SECONDS = 30.0
"""How long a failing provider is skipped, counted from its last failure."""

PROVIDER_FAULTS: tuple[type[ProviderError], ...] = (
    AuthError,
    QuotaError,
    ModelNotFound,
    Unsupported,
)
"""Errors that are the provider's problem, not the request's: another provider may serve it."""


IMAGE_FETCH_SECONDS = 60.0
"""How long fetching a generated image from the provider's URL may take."""

IMAGE_FETCH_LIMIT = 20 * 1024 * 1024
"""The largest image fetched from a provider's URL; Telegram takes no bigger photo anyway."""


ANSWER_PARTS = (TextDelta, ToolCallDelta)
"""Events that are part of the answer: once one was passed on, nothing is retried."""


class _Verdict(Enum):
    """What the failover loops do after an error, when it is not a wait before a retry."""

    GIVE_UP = "give up"
    NEXT = "next provider"


def user_tag(telegram_user_id: int) -> str:
    """A stable, non-reversible id for a Telegram user, for the providers' `user` field."""
    digest = hashlib.sha256(f"telegram:{telegram_user_id}".encode()).hexdigest()
    return digest[:_USER_TAG_LENGTH]


def build_provider(config: ProviderConfig, session: aiohttp.ClientSession) -> Provider:
    """The adapter for one configured provider."""
    match config.kind:
        case "openai":
            return OpenAICompatProvider(config, session)
        case "anthropic":
            return AnthropicProvider(config, session)
        case "wrapper":
            return WrapperProvider(config, session)


def retry_delay(
    attempt: int,
    retry_after: float | None,
    *,
    base: float = BACKOFF_BASE,
    cap: float = MAX_RETRY_WAIT,
) -> float | None:
    """Seconds to wait before retry number ``attempt`` (from 0); None when over ``cap``.

    The provider's ``retry_after`` wins over the backoff when it gave one.
    """
    delay = retry_after if retry_after is not None else base * 2**attempt
    return delay if delay <= cap else None


class ProviderHealth:
    """Consecutive retryable failures per provider, and whether it is cooling down.

    Pure state with an injectable clock. A provider cools down for ``cooldown`` seconds from
    its last failure once it failed ``threshold`` times in a row; when that has passed it is
    tried again, and a single further failure cools it down again until a success resets it.
    """

    def __init__(
        self,
        *,
        threshold: int = FAILURES_BEFORE_COOLDOWN,
        cooldown: float = COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._last_failure: dict[str, float] = {}

    def failed(self, name: str) -> None:
        """``name`` failed with a retryable error."""
        self._failures[name] = self._failures.get(name, 0) + 1
        self._last_failure[name] = self._clock()

    def succeeded(self, name: str) -> None:
        """``name`` served an answer: it is healthy again."""
        self._failures.pop(name, None)
        self._last_failure.pop(name, None)

    def failures(self, name: str) -> int:
        """Retryable failures of ``name`` since its last success."""
        return self._failures.get(name, 0)

    def cooling(self, name: str) -> bool:
        """True while ``name`` is to be skipped."""
        if self._failures.get(name, 0) < self.threshold:
            return False
        return self._clock() < self._last_failure[name] + self.cooldown


class ProviderService:
    """The configured providers, and the one way handlers reach them."""

    def __init__(
        self,
        providers: Sequence[tuple[ProviderConfig, Provider]],
        *,
        health: ProviderHealth | None = None,
        backoff: float = BACKOFF_BASE,
        max_retry_wait: float = MAX_RETRY_WAIT,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._providers = list(providers)
        self._session = session
        self.health = health or ProviderHealth()
        self._backoff = backoff
        self._max_retry_wait = max_retry_wait
        self.catalogue = ModelCatalogue([provider for _, provider in self._providers])
        """What each provider reports it serves; routing reads it, /models shows it."""
        self.on_error: Callable[[str, ProviderError], None] | None = None
        """Told of every failure of a provider (name, error), failed over or not."""

    @classmethod
    def from_config(cls, config: Config, session: aiohttp.ClientSession) -> ProviderService:
        """Build an adapter for every provider in ``config`` over one shared session."""
        return cls([(p, build_provider(p, session)) for p in config.providers], session=session)

    @property
    def keeps_sessions(self) -> bool:
        """Whether any provider keeps conversations itself (so sessions need looking up)."""
        return any(config.kind == "wrapper" for config, _ in self._providers)

    def providers_for(self, model: str) -> list[Provider]:
        """Providers that serve ``model``, best first (see ``_routes``)."""
        return [provider for _, provider in self._routes(model)]

    def stream_chat(
        self, request: ChatRequest, sessions: Mapping[str, str] | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Stream an answer; fail over or retry on errors before any of the answer was yielded.

        Each attempt starts with a ``StreamStart`` naming the provider that serves it.
        ``sessions`` maps provider names to the ``ProviderSession`` each gave for this
        conversation: an attempt gets ``request.session`` set to its own provider's and to
        None otherwise, so a session never reaches another provider (a value the caller set
        in ``request.session`` itself is replaced).
        """

        def open_stream(provider: Provider) -> AsyncIterator[StreamEvent]:
            return provider.stream_chat(_for_provider(request, provider.name, sessions))

        # The failover loop's generator itself, not one around it: one layer less per event.
        return self._stream(request.model, open_stream)

    def stream_completion(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Stream a legacy text completion, with the same failover as ``stream_chat``."""
        return self._stream(request.model, lambda p: p.stream_completion(request))

    async def edit_text(self, request: EditRequest) -> str:
        """``request.input`` edited by the first provider whose edits endpoint answers."""
        return await self._call(request.model, lambda p: p.edit_text(request))

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        """Images for ``request.prompt`` from the first provider that can make them."""
        return await self._call(request.model, lambda p: p.generate_images(request))

    async def edit_image(self, request: ImageEditRequest) -> list[GeneratedImage]:
        """``request.image`` edited by the first provider that can edit images."""
        return await self._call(request.model, lambda p: p.edit_image(request))

    async def fetch_image(self, url: str) -> bytes:
        """The bytes of an image a provider answered with as a URL (for when Telegram cannot
        fetch it itself), through the shared session; ``Unavailable`` when that fails."""
        if self._session is None:
            raise Unavailable(f"no HTTP session to fetch {url}")
        try:
            async with (
                asyncio.timeout(IMAGE_FETCH_SECONDS),
                self._session.get(url, raise_for_status=True) as response,
            ):
                data = await response.content.read(IMAGE_FETCH_LIMIT + 1)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Unavailable(f"fetching an image: {describe(exc)}") from exc
        if not data or len(data) > IMAGE_FETCH_LIMIT:
            raise Unavailable(f"fetching an image: {len(data)} bytes")
        return data

    async def _stream(
        self, model: str, open_stream: Callable[[Provider], AsyncIterator[StreamEvent]]
    ) -> AsyncIterator[StreamEvent]:
        """The failover loop of every streamed capability (see the module's docstring)."""
        for config, provider, last in self._attempt_order(model):
            attempt = 0
            while True:
                answered = False
                yield StreamStart(provider.name, model)
                try:
                    async for event in open_stream(provider):
                        if not answered:
                            answered = isinstance(event, ANSWER_PARTS)
                        yield event
                except ProviderError as exc:
                    delay = self._after_failure(exc, provider.name, config, attempt, last=last)
                    if answered or delay is _Verdict.GIVE_UP:
                        raise
                    if delay is _Verdict.NEXT:
                        break
                    await asyncio.sleep(delay)
                    attempt += 1
                else:
                    self.health.succeeded(provider.name)
                    return

    async def _call(self, model: str, call: Callable[[Provider], Awaitable[_T]]) -> _T:
        """The failover loop of every one-shot capability (see the module's docstring)."""
        error: ProviderError | None = None
        for config, provider, last in self._attempt_order(model):
            attempt = 0
            while True:
                try:
                    result = await call(provider)
                except ProviderError as exc:
                    error = exc
                    delay = self._after_failure(exc, provider.name, config, attempt, last=last)
                    if delay is _Verdict.GIVE_UP:
                        raise
                    if delay is _Verdict.NEXT:
                        break
                    await asyncio.sleep(delay)
                    attempt += 1
                else:
                    self.health.succeeded(provider.name)
                    return result
        raise error or Unsupported(f"no provider serves {model}")

    def _attempt_order(self, model: str) -> list[tuple[ProviderConfig, Provider, bool]]:
        """The routes for ``model`` without those cooling down, each flagged if it is last."""
        routes = self._routes(model)
        cooling = {p.name for _, p in routes if self.health.cooling(p.name)}
        if cooling and len(cooling) < len(routes):
            logger.info("skipping providers cooling down: %s", ", ".join(sorted(cooling)))
            routes = [(c, p) for c, p in routes if p.name not in cooling]
        return [(c, p, i == len(routes) - 1) for i, (c, p) in enumerate(routes)]

    def _after_failure(
        self, exc: ProviderError, name: str, config: ProviderConfig, attempt: int, *, last: bool
    ) -> float | _Verdict:
        """What to do after ``exc`` from provider ``name``: give up, move on, or wait and retry.

        Whether anything was already shown is the caller's business: then it always gives up.
        """
        if self.on_error is not None:
            self.on_error(name, exc)
        if exc.retryable:
            self.health.failed(name)
        if not (exc.retryable or isinstance(exc, PROVIDER_FAULTS)):
            return _Verdict.GIVE_UP
        if not last:
            logger.warning(
                "provider %s failed before answering (%s: %s); trying the next",
                name,
                exc.kind,
                exc.detail,
            )
            return _Verdict.NEXT
        delay = self._retry_delay(exc, attempt, config.retries)
        if delay is None:
            return _Verdict.GIVE_UP
        logger.warning(
            "provider %s failed before answering (%s: %s); retry %d in %.2fs",
            name,
            exc.kind,
            exc.detail,
            attempt + 1,
            delay,
        )
        return delay

    async def list_models(self) -> dict[str, list[ModelInfo]]:
        """The models each provider reports, by provider name."""
        return {provider.name: await provider.list_models() for _, provider in self._providers}

    def warm_catalogue(self) -> None:
        """Fetch the model lists in the background and keep them fresh, when routing needs them.

        With a single provider there is nothing to choose between, so nothing is fetched.
        """
        if len(self._providers) > 1:
            self.catalogue.start()

    async def aclose(self) -> None:
        """Release every adapter."""
        await self.catalogue.aclose()
        for _, provider in self._providers:
            await provider.aclose()

    def _routes(self, model: str) -> list[tuple[ProviderConfig, Provider]]:
        """Providers for ``model``: those whose config lists it, then those reporting it (as last
        fetched; never waited for), then those listing nothing; all of them if none applies."""
        order = route_order(
            model,
            [config.models for config, _ in self._providers],
            [self.catalogue.served(provider.name) for _, provider in self._providers],
        )
        return [self._providers[i] for i in order]

    def _retry_delay(self, exc: ProviderError, attempt: int, retries: int) -> float | None:
        """Seconds to wait before retrying the same provider after ``exc``; None to give up."""
        if not exc.retryable or isinstance(exc, ProviderTimeout) or attempt >= retries:
            return None
        return retry_delay(attempt, exc.retry_after, base=self._backoff, cap=self._max_retry_wait)


def _for_provider(
    request: ChatRequest, name: str, sessions: Mapping[str, str] | None
) -> ChatRequest:
    """``request`` with the session of provider ``name``, or with none."""
    session = sessions.get(name) if sessions else None
    return request if request.session == session else replace(request, session=session)
