"""Routing, retries, failover and cooldown: the real service and adapters against two fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.config import ProviderConfig, TimeoutConfig
from bot.errors import (
    ContextTooLong,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    StreamCut,
    Unavailable,
)
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    StreamEnd,
    StreamEvent,
)
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.service import (
    BACKOFF_BASE,
    MAX_RETRY_WAIT,
    ProviderHealth,
    ProviderService,
    retry_delay,
)
from tests import streams
from tests.fakes.provider import Chunk, Cut, Delay, ErrorResponse, FakeProvider, Role
from tests.streams import starts, text_of

MODEL = "gpt-test"
REQUEST = ChatRequest(model=MODEL, messages=(ChatMessage("user", "hello"),))
FAST = TimeoutConfig(connect=2.0, first_chunk=0.3, idle=0.3, total=5.0)
UNAVAILABLE = {"error": {"message": "upstream down", "type": "server_error"}}
RATE_LIMITED = {
    "error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}
}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def primary() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
async def backup() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


def service_for(
    session: aiohttp.ClientSession,
    *fakes: tuple[str, FakeProvider],
    clock: Clock | None = None,
    retries: int = 2,
    backoff: float = 0.01,
    max_retry_wait: float = 2.0,
) -> ProviderService:
    routes = []
    for name, fake in fakes:
        config = ProviderConfig(name=name, base_url=fake.base_url, timeouts=FAST, retries=retries)
        routes.append((config, OpenAICompatProvider(config, session)))
    health = ProviderHealth(clock=clock or Clock())
    return ProviderService(routes, health=health, backoff=backoff, max_retry_wait=max_retry_wait)


async def collect(service: ProviderService) -> list[StreamEvent]:
    return await streams.collect(service.stream_chat(REQUEST))


async def collect_until_error(
    service: ProviderService,
) -> tuple[list[StreamEvent], ProviderError]:
    return await streams.collect_until_error(service.stream_chat(REQUEST))


# --- failover ----------------------------------------------------------------------------------


async def test_503_before_any_text_fails_over_to_the_next_provider(
    session, primary, backup
) -> None:
    primary.enqueue_error(503, UNAVAILABLE)
    service = service_for(session, ("primary", primary), ("backup", backup))
    events = await collect(service)
    assert starts(events) == ["primary", "backup"]
    assert text_of(events) == "echo: hello"
    assert events[-1] == StreamEnd("stop")
    assert (len(primary.requests), len(backup.requests)) == (1, 1)
    assert service.health.failures("primary") == 1


async def test_stream_cut_after_text_propagates_without_failover(session, primary, backup) -> None:
    primary.enqueue(Role(), Chunk("partial "), Cut())
    service = service_for(session, ("primary", primary), ("backup", backup))
    events, error = await collect_until_error(service)
    assert isinstance(error, StreamCut)
    assert starts(events) == ["primary"]
    assert text_of(events) == "partial "
    assert backup.requests == []


async def test_stream_cut_before_text_fails_over(session, primary, backup) -> None:
    primary.enqueue(Role(), Cut())
    service = service_for(session, ("primary", primary), ("backup", backup))
    events = await collect(service)
    assert starts(events) == ["primary", "backup"]
    assert text_of(events) == "echo: hello"


async def test_timeout_before_text_fails_over(session, primary, backup) -> None:
    primary.enqueue(Delay(2), Chunk("late"))
    service = service_for(session, ("primary", primary), ("backup", backup))
    events = await collect(service)
    assert starts(events) == ["primary", "backup"]
    assert text_of(events) == "echo: hello"


async def test_request_errors_are_not_failed_over(session, primary, backup) -> None:
    body = {"error": {"message": "too long", "code": "context_length_exceeded"}}
    primary.enqueue_error(400, body)
    service = service_for(session, ("primary", primary), ("backup", backup))
    events, error = await collect_until_error(service)
    assert isinstance(error, ContextTooLong)
    assert starts(events) == ["primary"]
    assert backup.requests == []
    assert service.health.failures("primary") == 0


async def test_a_bad_key_on_one_provider_fails_over_to_the_next(session, primary, backup) -> None:
    primary.enqueue_error(401, {"error": {"message": "bad key", "code": "invalid_api_key"}})
    service = service_for(session, ("primary", primary), ("backup", backup))
    events = await collect(service)
    assert starts(events) == ["primary", "backup"]
    assert text_of(events) == "echo: hello"


async def test_the_last_providers_error_is_raised_when_every_one_failed(
    session, primary, backup
) -> None:
    primary.enqueue_error(503, UNAVAILABLE)
    backup.enqueue_error(400, {"error": {"message": "nope", "type": "invalid_request_error"}})
    events, error = await collect_until_error(
        service_for(session, ("primary", primary), ("backup", backup))
    )
    assert starts(events) == ["primary", "backup"]
    assert error.provider == "backup"


# --- retries on the last provider ------------------------------------------------------------


async def test_single_provider_is_retried_after_retry_after(session, primary) -> None:
    primary.enqueue(ErrorResponse(429, RATE_LIMITED, headers={"Retry-After": "0.3"}))
    service = service_for(session, ("primary", primary), backoff=0.01)
    events = await collect(service)
    assert starts(events) == ["primary", "primary"]
    assert text_of(events) == "echo: hello"
    first, second = primary.requests
    assert second.at - first.at >= 0.3


async def test_single_provider_backs_off_exponentially_then_gives_up(session, primary) -> None:
    for _ in range(3):
        primary.enqueue_error(503, UNAVAILABLE)
    service = service_for(session, ("primary", primary), retries=2, backoff=0.1)
    events, error = await collect_until_error(service)
    assert isinstance(error, Unavailable)
    assert starts(events) == ["primary"] * 3
    times = [r.at for r in primary.requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.1
    assert times[2] - times[1] >= 0.2


async def test_retries_zero_means_one_attempt(session, primary) -> None:
    primary.enqueue_error(503, UNAVAILABLE)
    _, error = await collect_until_error(service_for(session, ("primary", primary), retries=0))
    assert isinstance(error, Unavailable)
    assert len(primary.requests) == 1


async def test_retry_after_beyond_the_cap_gives_up_at_once(session, primary) -> None:
    primary.enqueue(ErrorResponse(429, RATE_LIMITED, headers={"Retry-After": "60"}))
    service = service_for(session, ("primary", primary), max_retry_wait=1.0)
    _, error = await collect_until_error(service)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 60.0
    assert len(primary.requests) == 1


async def test_a_timeout_is_not_retried_on_the_same_provider(session, primary) -> None:
    primary.enqueue(Delay(2), Chunk("late"))
    _, error = await collect_until_error(service_for(session, ("primary", primary)))
    assert isinstance(error, ProviderTimeout)
    assert len(primary.requests) == 1


async def test_the_last_of_several_providers_is_retried_too(session, primary, backup) -> None:
    primary.enqueue_error(503, UNAVAILABLE)
    backup.enqueue_error(503, UNAVAILABLE)
    service = service_for(session, ("primary", primary), ("backup", backup))
    events = await collect(service)
    assert starts(events) == ["primary", "backup", "backup"]
    assert text_of(events) == "echo: hello"


# --- cooldown ---------------------------------------------------------------------------------


async def test_provider_failing_three_times_is_skipped_until_its_cooldown_ends(
    session, primary, backup, clock
) -> None:
    service = service_for(session, ("primary", primary), ("backup", backup), clock=clock)
    for _ in range(3):
        primary.enqueue_error(503, UNAVAILABLE)
        assert starts(await collect(service)) == ["primary", "backup"]
    assert service.health.cooling("primary")

    events = await collect(service)
    assert starts(events) == ["backup"]
    assert len(primary.requests) == 3

    clock.now += service.health.cooldown + 1
    events = await collect(service)
    assert starts(events) == ["primary"]
    assert service.health.failures("primary") == 0


async def test_a_cooling_provider_is_still_used_when_it_is_the_only_one(
    session, primary, clock
) -> None:
    service = service_for(session, ("primary", primary), clock=clock, retries=0)
    for _ in range(3):
        primary.enqueue_error(503, UNAVAILABLE)
        await collect_until_error(service)
    assert service.health.cooling("primary")
    events = await collect(service)
    assert text_of(events) == "echo: hello"
    assert not service.health.cooling("primary")


def test_health_cools_down_after_threshold_failures_in_a_row() -> None:
    clock = Clock()
    health = ProviderHealth(threshold=3, cooldown=30.0, clock=clock)
    health.failed("a")
    health.failed("a")
    assert not health.cooling("a")
    health.failed("a")
    assert health.cooling("a")
    assert not health.cooling("b")
    clock.now += 29.9
    assert health.cooling("a")
    clock.now += 0.2
    assert not health.cooling("a")


def test_health_recools_at_once_when_a_provider_fails_after_its_cooldown() -> None:
    clock = Clock()
    health = ProviderHealth(threshold=3, cooldown=30.0, clock=clock)
    for _ in range(3):
        health.failed("a")
    clock.now += 31
    health.failed("a")
    assert health.cooling("a")


def test_health_success_resets_the_count() -> None:
    clock = Clock()
    health = ProviderHealth(threshold=3, clock=clock)
    health.failed("a")
    health.failed("a")
    health.succeeded("a")
    health.failed("a")
    assert health.failures("a") == 1
    assert not health.cooling("a")


# --- backoff arithmetic and routing ------------------------------------------------------------


def test_retry_delay_doubles_from_the_base_and_retry_after_wins() -> None:
    assert [retry_delay(n, None) for n in range(3)] == [
        BACKOFF_BASE,
        BACKOFF_BASE * 2,
        BACKOFF_BASE * 4,
    ]
    assert retry_delay(0, 3.0) == 3.0
    assert retry_delay(0, MAX_RETRY_WAIT) == MAX_RETRY_WAIT
    assert retry_delay(0, MAX_RETRY_WAIT + 1) is None
    assert retry_delay(10, None, base=1.0, cap=100.0) is None


async def test_providers_listing_the_model_come_before_open_ended_ones(session) -> None:
    def config(name: str, models: tuple[str, ...]) -> ProviderConfig:
        return ProviderConfig(name=name, base_url="http://127.0.0.1:1/v1", models=models)

    routes = [config("open", ()), config("other", ("m2",)), config("lister", ("m1",))]
    service = ProviderService([(c, OpenAICompatProvider(c, session)) for c in routes])
    assert [p.name for p in service.providers_for("m1")] == ["lister", "open"]
    assert [p.name for p in service.providers_for("m3")] == ["open"]
    only = ProviderService([(routes[1], OpenAICompatProvider(routes[1], session))])
    assert [p.name for p in only.providers_for("m3")] == ["other"]
