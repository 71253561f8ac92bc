"""What each provider reports it serves, cached, and the routing order that follows from it.

A provider's list comes from ``GET /v1/models`` (the wrapper kind's ``GET /openai/models``,
with its per-capability suggestions). Lists are fetched concurrently, each within
``FETCH_TIMEOUT`` seconds; a provider that fails or does not answer in time reports nothing
and is asked again after ``FAILURE_TTL`` seconds, a good list is kept for ``MODELS_TTL``.
Routing reads only the cache and never waits for a fetch: once ``start`` was called, a stale
entry is refreshed in the background while the old list goes on serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.errors import ErrorKind, ProviderError
from bot.providers.base import Provider
from bot.providers.wrapper import WrapperProvider

logger = logging.getLogger(__name__)

MODELS_TTL = 600.0
"""Seconds a provider's reported list is used before it is fetched again."""

FAILURE_TTL = 30.0
"""Seconds before a provider whose list could not be fetched is asked again."""

FETCH_TIMEOUT = 5.0
"""Seconds a provider has to report its models; a slower one reports nothing this time."""


@dataclass(frozen=True, slots=True)
class ProviderModels:
    """One provider's report: its models, its suggestions per capability, or why it has none.

    ``error`` is None when the provider answered (perhaps without any list: no endpoint).
    """

    provider: str
    models: tuple[str, ...] = ()
    suggest: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    error: ErrorKind | None = None


def route_order(
    model: str, configured: Sequence[Sequence[str]], reported: Sequence[frozenset[str]]
) -> list[int]:
    """Indexes of the providers for ``model``, best first.

    Providers whose configuration lists it, then those that report it, then those whose
    configuration lists nothing, each group in configured order; every provider when none
    of these applies. ``configured[i]`` and ``reported[i]`` describe provider ``i``.
    """
    count = len(configured)
    listing = [i for i in range(count) if model in configured[i]]
    reporting = [i for i in range(count) if model in reported[i] and i not in listing]
    chosen = set(listing + reporting)
    open_ended = [i for i in range(count) if not configured[i] and i not in chosen]
    return listing + reporting + open_ended or list(range(count))


class ModelsCache:
    """The newest report per provider and the last list that came back, with expiry times.

    Pure state with an injectable clock.
    """

    def __init__(
        self,
        *,
        ttl: float = MODELS_TTL,
        failure_ttl: float = FAILURE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._clock = clock
        self._reports: dict[str, tuple[ProviderModels, float]] = {}
        self._served: dict[str, frozenset[str]] = {}

    def put(self, report: ProviderModels) -> None:
        """Remember ``report``; a failed one expires sooner and keeps the last good list."""
        ttl = self._failure_ttl if report.error is not None else self._ttl
        self._reports[report.provider] = (report, self._clock() + ttl)
        if report.error is None:
            self._served[report.provider] = frozenset(report.models)

    def report(self, provider: str) -> ProviderModels | None:
        """The newest report of ``provider``, fresh or not; None if it never reported."""
        entry = self._reports.get(provider)
        return None if entry is None else entry[0]

    def fresh(self, provider: str) -> bool:
        """Whether the newest report of ``provider`` is still within its time to live."""
        entry = self._reports.get(provider)
        return entry is not None and self._clock() < entry[1]

    def served(self, provider: str) -> frozenset[str]:
        """The models of the last list ``provider`` gave; empty if it never gave one."""
        return self._served.get(provider, frozenset())


class ModelCatalogue:
    """The providers' reported models, fetched concurrently and cached."""

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        timeout: float = FETCH_TIMEOUT,
        cache: ModelsCache | None = None,
    ) -> None:
        self._providers = list(providers)
        self._timeout = timeout
        self._cache = cache or ModelsCache()
        self._fetching: dict[str, asyncio.Task[None]] = {}
        self._background = False

    def start(self) -> None:
        """Fetch every list now in the background, and keep them fresh as routing reads them."""
        self._background = True
        for provider in self._providers:
            self._refresh(provider)

    async def reports(self) -> list[ProviderModels]:
        """Every provider's report in configured order; stale ones are fetched first."""
        stale = [self._refresh(p) for p in self._providers if not self._cache.fresh(p.name)]
        if stale:
            # Shielded: a caller giving up must not cancel a fetch other callers share.
            await asyncio.gather(*(asyncio.shield(task) for task in stale))
        return [
            self._cache.report(p.name) or ProviderModels(p.name, error=ErrorKind.UNAVAILABLE)
            for p in self._providers
        ]

    def served(self, provider: str) -> frozenset[str]:
        """The models ``provider`` last reported, without waiting; a stale list is refreshed."""
        if self._background and not self._cache.fresh(provider):
            for candidate in self._providers:
                if candidate.name == provider:
                    self._refresh(candidate)
        return self._cache.served(provider)

    async def aclose(self) -> None:
        """Cancel the fetches still running."""
        self._background = False
        tasks = list(self._fetching.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _refresh(self, provider: Provider) -> asyncio.Task[None]:
        """The running fetch of ``provider``'s list, started if there is none."""
        task = self._fetching.get(provider.name)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._fetch(provider), name=f"models-{provider.name}"
            )
            self._fetching[provider.name] = task
            task.add_done_callback(lambda _: self._fetching.pop(provider.name, None))
        return task

    async def _fetch(self, provider: Provider) -> None:
        self._cache.put(await self._ask(provider))

    async def _ask(self, provider: Provider) -> ProviderModels:
        """``provider``'s report; a failure or a timeout is logged and becomes an empty one."""
        name = provider.name
        try:
            async with asyncio.timeout(self._timeout):
                if isinstance(provider, WrapperProvider):
                    found = await provider.model_catalogue()
                    models, suggest = found.models, dict(found.suggest)
                else:
                    models, suggest = await provider.list_models(), {}
        except TimeoutError:
            logger.warning("%s: no model list within %.1fs", name, self._timeout)
            return ProviderModels(name, error=ErrorKind.TIMEOUT)
        except ProviderError as exc:
            logger.warning("%s: model list failed (%s: %s)", name, exc.kind, exc.detail)
            return ProviderModels(name, error=exc.kind)
        except Exception:
            # A list is a convenience: whatever broke, routing and /models go on without it.
            logger.exception("%s: model list could not be read", name)
            return ProviderModels(name, error=ErrorKind.UNAVAILABLE)
        logger.info("%s reports %d models", name, len(models))
        return ProviderModels(name, tuple(dict.fromkeys(m.id for m in models)), suggest)
