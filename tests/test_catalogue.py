"""The model catalogue: route order, the cache, fetching lists, and routing by what is reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from bot.config import ProviderConfig, TimeoutConfig
from bot.errors import ErrorKind, QuotaError
from bot.providers.base import ChatMessage, ChatRequest, ModelInfo, Provider, StreamEvent
from bot.providers.catalogue import (
    ModelCatalogue,
    ModelsCache,
    ProviderModels,
    route_order,
)
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.service import ProviderService
from bot.providers.wrapper import WrapperProvider
from tests.fakes.provider import ErrorResponse, FakeProvider
from tests.fakes.wrapper import FakeWrapper

FAST = TimeoutConfig(connect=2.0, first_chunk=2.0, idle=2.0, total=5.0)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ListingProvider(Provider):
    """A provider whose model list is given, delayed, or fails; it answers no chats."""

    def __init__(
        self, name: str, models: tuple[str, ...] = (), *, error: Exception | None = None
    ) -> None:
        self.name = name
        self.models = models
        self.error = error
        self.hang = asyncio.Event()
        self.hanging = False
        self.calls = 0

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        raise AssertionError(f"{self.name} was asked to chat about {request.model}")

    async def list_models(self) -> list[ModelInfo]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.hanging:
            await self.hang.wait()
        if self.error is not None:
            raise self.error
        return [ModelInfo(m) for m in self.models]


# --- route order -------------------------------------------------------------------------------


def test_config_listing_comes_first_then_reporting_then_open_ended() -> None:
    configured = [(), ("a",), ("b",), ()]
    reported = [frozenset(), frozenset({"a", "x"}), frozenset({"x"}), frozenset({"x"})]
    assert route_order("a", configured, reported) == [1, 0, 3]
    assert route_order("x", configured, reported) == [1, 2, 3, 0]
    assert route_order("unknown", configured, reported) == [0, 3]


def test_a_model_nobody_lists_or_reports_goes_to_every_provider() -> None:
    assert route_order("z", [("a",), ("b",)], [frozenset(), frozenset()]) == [0, 1]


# --- the cache ---------------------------------------------------------------------------------


def test_a_list_is_fresh_for_its_time_to_live() -> None:
    clock = Clock()
    cache = ModelsCache(ttl=600, failure_ttl=30, clock=clock)
    assert not cache.fresh("p")
    assert cache.report("p") is None
    cache.put(ProviderModels("p", ("m1", "m2")))
    clock.now += 599
    assert cache.fresh("p")
    clock.now += 1
    assert not cache.fresh("p")
    assert cache.served("p") == {"m1", "m2"}, "a stale list still serves routing"


def test_a_failure_is_retried_sooner_and_keeps_the_last_good_list() -> None:
    clock = Clock()
    cache = ModelsCache(ttl=600, failure_ttl=30, clock=clock)
    cache.put(ProviderModels("p", ("m1",)))
    clock.now += 700
    cache.put(ProviderModels("p", error=ErrorKind.TIMEOUT))
    report = cache.report("p")
    assert report is not None
    assert report.error is ErrorKind.TIMEOUT
    assert cache.served("p") == {"m1"}
    clock.now += 29
    assert cache.fresh("p")
    clock.now += 1
    assert not cache.fresh("p")


# --- fetching ----------------------------------------------------------------------------------


async def test_a_hanging_or_failing_provider_reports_nothing_and_others_still_report() -> None:
    slow = ListingProvider("slow", ("s1",))
    slow.hanging = True
    broke = ListingProvider("broke", error=QuotaError("no balance"))
    good = ListingProvider("good", ("g1", "g2", "g1"))
    catalogue = ModelCatalogue([slow, broke, good], timeout=0.05)
    reports = await catalogue.reports()
    assert reports == [
        ProviderModels("slow", error=ErrorKind.TIMEOUT),
        ProviderModels("broke", error=ErrorKind.QUOTA),
        ProviderModels("good", ("g1", "g2")),
    ]
    assert catalogue.served("good") == {"g1", "g2"}
    assert catalogue.served("slow") == frozenset()


async def test_lists_are_cached_and_concurrent_callers_share_one_fetch() -> None:
    provider = ListingProvider("p", ("m",))
    catalogue = ModelCatalogue([provider])
    first, second = await asyncio.gather(catalogue.reports(), catalogue.reports())
    assert first == second == [ProviderModels("p", ("m",))]
    await catalogue.reports()
    assert provider.calls == 1


async def test_routing_reads_without_fetching_until_started_then_refreshes_in_background() -> None:
    provider = ListingProvider("p", ("m",))
    provider.hanging = True
    catalogue = ModelCatalogue([provider], timeout=5)
    assert catalogue.served("p") == frozenset()
    await asyncio.sleep(0.01)
    assert provider.calls == 0
    catalogue.start()
    assert catalogue.served("p") == frozenset(), "routing never waits for a list"
    await asyncio.sleep(0.01)
    assert provider.calls == 1
    provider.hang.set()
    for _ in range(100):
        if catalogue.served("p"):
            break
        await asyncio.sleep(0.01)
    assert catalogue.served("p") == {"m"}
    await catalogue.aclose()


async def test_closing_cancels_a_fetch_in_flight() -> None:
    provider = ListingProvider("p", ("m",))
    provider.hanging = True
    catalogue = ModelCatalogue([provider], timeout=60)
    catalogue.start()
    await asyncio.sleep(0.01)
    await catalogue.aclose()
    assert catalogue.served("p") == frozenset()


# --- over HTTP ---------------------------------------------------------------------------------


def _openai(
    name: str, fake: FakeProvider, session: aiohttp.ClientSession
) -> tuple[ProviderConfig, OpenAICompatProvider]:
    config = ProviderConfig(name=name, base_url=fake.base_url, timeouts=FAST, retries=0)
    return config, OpenAICompatProvider(config, session)


async def test_the_wrapper_reports_its_models_and_suggestions_in_one_request(session) -> None:
    async with FakeWrapper() as wrapper:
        config = ProviderConfig(name="w", kind="wrapper", base_url=wrapper.base_url)
        catalogue = ModelCatalogue([WrapperProvider(config, session)])
        (report,) = await catalogue.reports()
    assert report.error is None
    assert report.models[0] == "whisper-1"
    assert "gpt-4" in report.models, "a suggested model is served too"
    assert report.suggest["chat"] == ("gpt-4",)
    assert report.suggest["audio.transcriptions"] == ("whisper-1",)
    assert [r.path for r in wrapper.requests] == ["/openai/models"]


async def test_a_provider_without_a_models_endpoint_reports_an_empty_list(session) -> None:
    async with FakeProvider(models=None) as fake:
        catalogue = ModelCatalogue([_openai("bare", fake, session)[1]])
        assert await catalogue.reports() == [ProviderModels("bare")]


async def test_a_model_only_the_second_provider_reports_is_routed_there(session) -> None:
    async with (
        FakeProvider(models=[{"id": "common"}]) as first,
        FakeProvider(models=[{"id": "common"}, {"id": "special"}]) as second,
    ):
        service = ProviderService(
            [_openai("first", first, session), _openai("second", second, session)]
        )
        try:
            service.warm_catalogue()
            await service.catalogue.reports()
            assert [p.name for p in service.providers_for("special")] == ["second", "first"]
            assert [p.name for p in service.providers_for("common")] == ["first", "second"]
            request = ChatRequest(model="special", messages=(ChatMessage("user", "hi"),))
            events = [e async for e in service.stream_chat(request)]
        finally:
            await service.aclose()
    assert events[0].provider == "second"  # type: ignore[union-attr]
    assert [r.path for r in second.requests][-1] == "/v1/chat/completions"
    assert second.requests[-1].json["model"] == "special"
    assert all(r.path == "/v1/models" for r in first.requests)


async def test_a_failing_models_endpoint_leaves_routing_to_the_config(session) -> None:
    down = ErrorResponse(503, {"error": {"message": "down", "type": "server_error"}})
    async with FakeProvider(models=down) as first, FakeProvider() as second:
        service = ProviderService(
            [_openai("first", first, session), _openai("second", second, session)]
        )
        try:
            reports = await service.catalogue.reports()
            assert [r.error for r in reports] == [ErrorKind.UNAVAILABLE, None]
            assert [p.name for p in service.providers_for("fake-model")] == ["second", "first"]
            assert [p.name for p in service.providers_for("other")] == ["first", "second"]
        finally:
            await service.aclose()


async def test_a_single_provider_is_not_asked_for_its_list_at_start(session) -> None:
    async with FakeProvider() as fake:
        service = ProviderService([_openai("only", fake, session)])
        service.warm_catalogue()
        assert [p.name for p in service.providers_for("anything")] == ["only"]
        await asyncio.sleep(0.05)
        await service.aclose()
    assert fake.requests == []


async def test_a_hanging_models_endpoint_times_out_within_the_provider_deadline(session) -> None:
    async with FakeProvider() as fake:
        fake.models_delay = 30.0
        slow = TimeoutConfig(connect=1.0, first_chunk=0.2, idle=0.2, total=1.0)
        config = ProviderConfig(name="slow", base_url=fake.base_url, timeouts=slow)
        catalogue = ModelCatalogue([OpenAICompatProvider(config, session)])
        assert await catalogue.reports() == [ProviderModels("slow", error=ErrorKind.TIMEOUT)]
