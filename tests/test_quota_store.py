"""The quota counters on SQLite and PostgreSQL: all-or-nothing reservations, no overspend
under concurrency, settling, releasing, and holds a crashed process left behind."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import event
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import QuotaLimits, QuotaRole, QuotasConfig
from bot.handlers.quota import rehearsal_requests
from bot.quotas import Counter, CounterKey, Figures, Measure, Period, Refusal, Scope, counters_for
from bot.storage.db import create_engine
from bot.storage.quotas import Hold, QuotaStore
from bot.storage.store import Store
from tests.fakes.databases import record_cache_use

NOW = datetime(2026, 11, 30, 18, 47, tzinfo=UTC)
USER_DAY = CounterKey(Scope.USER, 42, "2026-11-30")
USER_MONTH = CounterKey(Scope.USER, 42, "2026-11")
CHAT_DAY = CounterKey(Scope.CHAT, -100, "2026-11-30")
HOUR = timedelta(hours=1)


class Clock:
    """A settable clock for the store's notion of now."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def quotas_on(store: Store, clock: Clock | None = None) -> QuotaStore:
    return QuotaStore(store, hold_for=HOUR, clock=clock or Clock())


async def test_a_reservation_takes_a_request_and_its_tokens_on_every_counter(store):
    quotas = quotas_on(store)
    counters = [Counter(USER_DAY, requests=5, tokens=1000), Counter(USER_MONTH), Counter(CHAT_DAY)]

    hold = await quotas.reserve(counters, 300)

    assert isinstance(hold, Hold)
    assert hold.id is not None
    assert await quotas.figures([USER_DAY, USER_MONTH, CHAT_DAY]) == {
        USER_DAY: Figures(requests=1, tokens=0, reserved=300),
        USER_MONTH: Figures(requests=1, tokens=0, reserved=300),
        CHAT_DAY: Figures(requests=1, tokens=0, reserved=300),
    }


async def test_settling_counts_the_tokens_used_and_drops_the_reservation(store):
    quotas = quotas_on(store)
    hold = await quotas.reserve([Counter(USER_DAY, tokens=1000), Counter(USER_MONTH)], 300)
    assert isinstance(hold, Hold)

    await quotas.settle(hold, 412)

    figures = await quotas.figures([USER_DAY, USER_MONTH])
    assert figures[USER_DAY] == Figures(requests=1, tokens=412, reserved=0)
    assert figures[USER_MONTH] == Figures(requests=1, tokens=412, reserved=0)


async def test_releasing_gives_back_the_request_and_the_reservation(store):
    quotas = quotas_on(store)
    hold = await quotas.reserve([Counter(USER_DAY, requests=1)], 300)
    assert isinstance(hold, Hold)

    await quotas.release(hold)

    assert (await quotas.figures([USER_DAY]))[USER_DAY] == Figures(0, 0, 0)
    assert isinstance(await quotas.reserve([Counter(USER_DAY, requests=1)], 300), Hold)


async def test_a_request_over_a_limit_holds_nothing_on_any_counter(store):
    quotas = quotas_on(store)
    first = await quotas.reserve([Counter(CHAT_DAY, requests=1), Counter(USER_DAY)], 10)
    assert isinstance(first, Hold)

    refused = await quotas.reserve([Counter(CHAT_DAY, requests=1), Counter(USER_DAY)], 10)

    assert refused == Refusal(
        Scope.CHAT, Period.DAY, Measure.REQUESTS, 1, datetime(2026, 12, 1, tzinfo=UTC)
    )
    # The user's counter, updated before the chat's failed, was rolled back with it.
    figures = await quotas.figures([CHAT_DAY, USER_DAY])
    assert figures[USER_DAY] == Figures(requests=1, tokens=0, reserved=10)
    assert figures[CHAT_DAY] == Figures(requests=1, tokens=0, reserved=10)


async def test_the_refusal_names_the_full_counter_not_one_the_request_touched_before_it(store):
    quotas = quotas_on(store)
    # The user's counter is updated first and has room; the chat's then has none.
    counters = [Counter(USER_DAY, requests=2), Counter(CHAT_DAY, requests=1)]
    assert isinstance(await quotas.reserve(counters, 10), Hold)

    refused = await quotas.reserve(counters, 10)

    assert isinstance(refused, Refusal)
    assert (refused.scope, refused.limit) == (Scope.CHAT, 1)


async def test_tokens_are_granted_while_any_remain_and_refused_once_used_or_held(store):
    quotas = quotas_on(store)
    limited = [Counter(USER_DAY, tokens=1000)]
    first = await quotas.reserve(limited, 900)
    assert isinstance(first, Hold)
    # 100 tokens remain: let through, though its estimate is larger.
    second = await quotas.reserve(limited, 900)
    assert isinstance(second, Hold)
    held = await quotas.reserve(limited, 900)
    assert isinstance(held, Refusal)
    assert held.measure is Measure.TOKENS

    await quotas.settle(first, 100)
    await quotas.settle(second, 950)

    used = await quotas.reserve(limited, 1)
    assert isinstance(used, Refusal)
    assert (used.measure, used.limit) == (Measure.TOKENS, 1000)
    # An image needs no tokens: only its request limit applies.
    assert isinstance(await quotas.reserve(limited, 0), Hold)


async def test_many_concurrent_reservations_against_a_limit_of_k_grant_exactly_k(
    database_url: str, engine: AsyncEngine
):
    limit, attempts = 7, 40
    # One Store per "instance", each with its own connections: on PostgreSQL the
    # transactions really run at once; SQLite serialises them.
    engines = [create_engine(database_url) for _ in range(4)]
    try:
        stores = [QuotaStore(Store(e), hold_for=HOUR, clock=Clock()) for e in engines]
        counters = [
            Counter(CHAT_DAY, requests=limit),
            Counter(USER_DAY, requests=limit * 10, tokens=10**6),
            Counter(USER_MONTH, requests=limit * 10),
        ]
        outcomes = await asyncio.gather(
            *(stores[n % len(stores)].reserve(counters, 50) for n in range(attempts))
        )
        figures = await stores[0].figures([CHAT_DAY, USER_DAY, USER_MONTH])
    finally:
        for e in engines:
            await e.dispose()

    granted = [o for o in outcomes if isinstance(o, Hold)]
    refused = [o for o in outcomes if isinstance(o, Refusal)]
    assert len(granted) == limit
    assert len(refused) == attempts - limit
    assert {(r.scope, r.measure) for r in refused} == {(Scope.CHAT, Measure.REQUESTS)}
    assert figures[CHAT_DAY] == Figures(requests=limit, tokens=0, reserved=50 * limit)
    assert figures[USER_DAY] == Figures(requests=limit, tokens=0, reserved=50 * limit)
    assert figures[USER_MONTH] == Figures(requests=limit, tokens=0, reserved=50 * limit)


async def test_reservations_and_settlements_made_at_once_share_one_transaction(engine: AsyncEngine):
    quotas = quotas_on(Store(engine))
    # The first reservation also sweeps expired holds, in a transaction of its own; its
    # hold is there before the others'.
    first = await quotas.reserve([Counter(USER_DAY)], 5)
    assert isinstance(first, Hold)
    commits = 0

    def counted(_connection: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine.sync_engine, "commit", counted)
    try:
        outcomes = await asyncio.gather(
            *(
                quotas.reserve(
                    [
                        Counter(CounterKey(Scope.USER, user, "2026-11-30"), requests=1),
                        Counter(CHAT_DAY, requests=20),
                    ],
                    100,
                )
                for user in range(1, 31)
            )
        )
    finally:
        event.remove(engine.sync_engine, "commit", counted)

    assert commits == 1, "one transaction for the burst"
    granted = [o for o in outcomes if isinstance(o, Hold)]
    assert len(granted) == 20, "the group's 20 requests, in the order they were asked"
    assert [isinstance(o, Hold) for o in outcomes] == [True] * 20 + [False] * 10
    assert len({hold.id for hold in granted} | {first.id}) == 21, "each has its own hold"
    figures = await quotas.figures([CHAT_DAY, CounterKey(Scope.USER, 30, "2026-11-30")])
    assert figures[CHAT_DAY] == Figures(requests=20, tokens=0, reserved=2000)
    assert figures[CounterKey(Scope.USER, 30, "2026-11-30")] == Figures(0, 0, 0)
    commits = 0
    event.listen(engine.sync_engine, "commit", counted)
    try:
        # Answers ending together: settled (or given back) in one transaction too.
        await asyncio.gather(
            *(quotas.settle(hold, 10) for hold in granted[:15]),
            *(quotas.release(hold) for hold in granted[15:]),
        )
    finally:
        event.remove(engine.sync_engine, "commit", counted)
    assert commits == 1
    assert (await quotas.figures([CHAT_DAY]))[CHAT_DAY] == Figures(15, 150, 0)
    assert (await quotas.figures([CounterKey(Scope.USER, 20, "2026-11-30")]))[
        CounterKey(Scope.USER, 20, "2026-11-30")
    ] == Figures(0, 0, 0), "the given-back request is not counted"
    await quotas.settle(first, 1)
    assert (await quotas.figures([USER_DAY]))[USER_DAY] == Figures(1, 1, 0)


async def test_a_reservation_whose_caller_stopped_waiting_holds_nothing(store):
    quotas = quotas_on(store)
    counters = [Counter(USER_DAY, requests=1000), Counter(USER_MONTH)]
    kept = 0
    # Cancel at many points: before its batch is decided, and while it is.
    for attempt in range(40):
        waiting = asyncio.ensure_future(quotas.reserve(counters, 50))
        kept_one = asyncio.ensure_future(quotas.reserve(counters, 50))
        for _ in range(attempt % 8):
            await asyncio.sleep(0)
        waiting.cancel()
        (outcome,) = await asyncio.gather(waiting, return_exceptions=True)
        # Decided before the cancel arrived, it is its caller's to settle: kept too.
        kept += 1 + isinstance(outcome, Hold)
        assert isinstance(await kept_one, Hold)
    # A hold granted to a caller that had gone is released by the batch itself, later.
    for _ in range(100):
        figures = await quotas.figures([USER_DAY, USER_MONTH])
        if figures[USER_DAY].requests == kept:
            break
        await asyncio.sleep(0.01)
    assert figures[USER_DAY] == Figures(requests=kept, tokens=0, reserved=50 * kept)
    assert figures[USER_MONTH] == Figures(requests=kept, tokens=0, reserved=50 * kept)


async def test_concurrent_settlements_and_reservations_keep_the_counters_exact(store):
    quotas = quotas_on(store)
    counters = [Counter(USER_DAY, requests=100), Counter(CHAT_DAY)]
    holds = [await quotas.reserve(counters, 20) for _ in range(10)]
    assert all(isinstance(h, Hold) for h in holds)

    await asyncio.gather(
        *(quotas.settle(h, 5) for h in holds[:5] if isinstance(h, Hold)),
        *(quotas.release(h) for h in holds[5:] if isinstance(h, Hold)),
        *(quotas.reserve(counters, 20) for _ in range(3)),
    )

    figures = await quotas.figures([USER_DAY, CHAT_DAY])
    assert figures[USER_DAY] == Figures(requests=8, tokens=25, reserved=60)
    assert figures[CHAT_DAY] == Figures(requests=8, tokens=25, reserved=60)


async def test_a_hold_never_settled_expires_and_keeps_its_request(store):
    clock = Clock()
    quotas = quotas_on(store, clock)
    limited = [Counter(USER_DAY, requests=10, tokens=1000)]
    crashed = await quotas.reserve(limited, 1000)
    assert isinstance(crashed, Hold)
    assert isinstance(await quotas.reserve(limited, 10), Refusal)

    clock.now = NOW + HOUR - timedelta(seconds=1)
    assert await quotas.expire_holds() == 0
    clock.now = NOW + HOUR
    assert await quotas.expire_holds() == 1

    assert (await quotas.figures([USER_DAY]))[USER_DAY] == Figures(1, 0, 0)
    assert isinstance(await quotas.reserve(limited, 10), Hold)


async def test_an_answer_settling_after_its_hold_expired_counts_its_tokens_once(store):
    clock = Clock()
    quotas = quotas_on(store, clock)
    hold = await quotas.reserve([Counter(USER_DAY)], 500)
    assert isinstance(hold, Hold)
    clock.now = NOW + 2 * HOUR
    await quotas.expire_holds()

    await quotas.settle(hold, 700)

    assert (await quotas.figures([USER_DAY]))[USER_DAY] == Figures(1, 700, 0)


async def test_reservations_sweep_expired_holds_themselves(store):
    clock = Clock()
    quotas = quotas_on(store, clock)
    limited = [Counter(USER_DAY, tokens=100)]
    assert isinstance(await quotas.reserve(limited, 100), Hold)
    assert isinstance(await quotas.reserve(limited, 100), Refusal)

    clock.now = NOW + 2 * HOUR

    assert isinstance(await quotas.reserve(limited, 100), Hold)


async def test_totals_and_the_ranking_cover_the_period_asked_for(store):
    quotas = quotas_on(store)
    await store.ensure_chat(-100, "supergroup", "Readers")
    for user, tokens in ((1, 50), (2, 500), (3, 5)):
        day = CounterKey(Scope.USER, user, "2026-11-30")
        hold = await quotas.reserve([Counter(day), Counter(CHAT_DAY)], 10)
        assert isinstance(hold, Hold)
        await quotas.settle(hold, tokens)
    yesterday = await quotas.reserve([Counter(CounterKey(Scope.USER, 9, "2026-11-29"))], 10)
    assert isinstance(yesterday, Hold)

    users, total = await quotas.totals(Scope.USER, "2026-11-30")
    top = await quotas.top(Scope.USER, "2026-11-30", 2)
    chats = await quotas.top(Scope.CHAT, "2026-11-30", 10)

    assert (users, total) == (3, Figures(requests=3, tokens=555, reserved=0))
    assert [(r.subject, r.figures.tokens) for r in top] == [(2, 500), (1, 50)]
    assert [(r.subject, r.title, r.figures.requests) for r in chats] == [(-100, "Readers", 3)]


# ------------------------------------------------------------------ start-up


def _limited() -> QuotasConfig:
    """Quotas on users and groups, as a bot with quotas would have them."""
    return QuotasConfig(
        roles={"default": QuotaRole(requests_per_day=100, tokens_per_day=100_000)},
        chats={"default": QuotaLimits(requests_per_day=100, tokens_per_day=100_000)},
    )


async def test_after_the_warm_up_requests_of_any_burst_size_run_compiled_statements(
    store: Store, engine: AsyncEngine
) -> None:
    config = _limited()
    quotas = quotas_on(store)
    await quotas.warm_up(rehearsal_requests(config))
    used = record_cache_use(engine)

    def request(user: int, chat: int, *, group: bool) -> tuple[Counter, ...]:
        return counters_for(config, user_id=user, chat_id=chat, group=group, admins=(), now=NOW)

    # One private request, answered; then bursts in private chats and in a group, one
    # settled and one given back each.
    hold = await quotas.reserve(request(1, 1, group=False), 300)
    assert isinstance(hold, Hold)
    await quotas.settle(hold, 120)
    for group in (False, True):
        outcomes = await asyncio.gather(
            *(quotas.reserve(request(user, -100, group=group), 300) for user in (2, 3, 4))
        )
        holds = [hold for hold in outcomes if isinstance(hold, Hold)]
        assert len(holds) == 3
        await asyncio.gather(
            quotas.settle(holds[0], 50), *(quotas.release(hold) for hold in holds[1:])
        )

    assert {word for word, _ in used} >= {"INSERT", "SELECT", "UPDATE", "DELETE"}
    assert [(word, hit) for word, hit in used if hit is not CacheStats.CACHE_HIT] == []


async def test_the_warm_up_leaves_no_counters_and_releases_holds_a_stopped_process_left(
    store: Store,
) -> None:
    clock = Clock()
    left = await quotas_on(store, clock).reserve([Counter(USER_DAY)], 500)
    assert isinstance(left, Hold)
    clock.now = NOW + 2 * HOUR
    restarted = quotas_on(store, clock)

    await restarted.warm_up(rehearsal_requests(_limited()))

    assert await restarted.figures([USER_DAY]) == {USER_DAY: Figures(1, 0, 0)}
    rehearsed = [c.key for counters in rehearsal_requests(_limited()) for c in counters]
    assert await restarted.figures(rehearsed) == {}
