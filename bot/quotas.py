"""Pure quota rules: which counters a request touches, their limits, periods and refusals.

A request counts against up to four counters: its user's for the UTC day and month and, in
a group, the chat's for the day and month. It is let through only if every limited counter
has a request left and, when it needs tokens, tokens left; it then reserves one request and
its token estimate on each (``bot/storage/quotas.py`` does that atomically).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.config import DEFAULT_ROLE, ProviderConfig, QuotaLimits, QuotasConfig
from bot.providers.anthropic import DEFAULT_MAX_TOKENS as ANTHROPIC_MAX_TOKENS

ADMIN_ROLE = "admin"
"""The role name shown to bot admins, who are counted but never limited."""

DEFAULT_COMPLETION_ALLOWANCE = 1024
"""Tokens reserved for an answer when no provider sets ``max_tokens``."""


class Scope(StrEnum):
    """Whose counter: a user's (anywhere) or a group chat's (everyone in it)."""

    USER = "user"
    CHAT = "chat"


class Period(StrEnum):
    """How long a counter runs: a UTC day or a UTC month."""

    DAY = "day"
    MONTH = "month"


class Measure(StrEnum):
    """What a limit counts."""

    REQUESTS = "requests"
    TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class CounterKey:
    """One counter's row: ``period`` is "2026-11-30" for a day, "2026-11" for a month."""

    scope: Scope
    subject: int
    period: str


def lock_order(key: CounterKey) -> tuple[bool, int, str]:
    """The order every transaction touches counter rows in, so that none deadlocks.

    A group's rows come last: all its members' requests wait for them, so each request
    should hold them for the shortest time, from its last update to its commit.
    """
    return (key.scope is Scope.CHAT, key.subject, key.period)


@dataclass(frozen=True, slots=True)
class Counter:
    """A counter a request touches, with its limits (0: none)."""

    key: CounterKey
    requests: int = 0
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class Figures:
    """A counter's state: requests and tokens used, and tokens held by answers in flight."""

    requests: int = 0
    tokens: int = 0
    reserved: int = 0


@dataclass(frozen=True, slots=True)
class Ranked:
    """A user or chat in the /usage ranking, with the chat's title if known."""

    subject: int
    title: str | None
    figures: Figures


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: which limit ran out, and when it resets."""

    scope: Scope
    period: Period
    measure: Measure
    limit: int
    resets_at: datetime


def period_id(period: Period, now: datetime) -> str:
    """The id of the day or month ``now`` (UTC) is in."""
    now = now.astimezone(UTC)
    return now.strftime("%Y-%m-%d" if period is Period.DAY else "%Y-%m")


def period_of(period: str) -> Period:
    """Whether a period id names a day or a month."""
    return Period.DAY if len(period) == len("2026-11-30") else Period.MONTH


def period_end(period: Period, now: datetime) -> datetime:
    """When the day or month ``now`` is in ends: the next UTC midnight or first of a month."""
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        return midnight + timedelta(days=1)
    if now.month == 12:
        return midnight.replace(year=now.year + 1, month=1, day=1)
    return midnight.replace(month=now.month + 1, day=1)


def user_role(quotas: QuotasConfig, user_id: int, admins: Iterable[int]) -> tuple[str, QuotaLimits]:
    """The role name and limits of ``user_id``: bot admins have none, others their role's."""
    if user_id in admins:
        return ADMIN_ROLE, QuotaLimits()
    for name, role in quotas.roles.items():
        if user_id in role.users:
            return name, role
    return DEFAULT_ROLE, quotas.roles.get(DEFAULT_ROLE, QuotaLimits())


def chat_limits(quotas: QuotasConfig, chat_id: int) -> QuotaLimits:
    """The limits of a group chat: its own if configured, else every group's."""
    own = quotas.chats.get(str(chat_id))
    if own is not None:
        return own
    return quotas.chats.get(DEFAULT_ROLE, QuotaLimits())


def counters_for(
    quotas: QuotasConfig,
    *,
    user_id: int | None,
    chat_id: int,
    group: bool,
    admins: Iterable[int],
    now: datetime,
) -> tuple[Counter, ...]:
    """The counters a request touches, in ``lock_order``.

    A bot admin's requests are counted (the figures stay true) but never limited, in a
    group's counters too.
    """
    admin = user_id is not None and user_id in admins
    counters: list[Counter] = []
    if user_id is not None:
        _, limits = user_role(quotas, user_id, admins)
        counters += _pair(Scope.USER, user_id, limits, now)
    if group:
        limits = QuotaLimits() if admin else chat_limits(quotas, chat_id)
        counters += _pair(Scope.CHAT, chat_id, limits, now)
    return tuple(sorted(counters, key=lambda counter: lock_order(counter.key)))


def _pair(scope: Scope, subject: int, limits: QuotaLimits, now: datetime) -> list[Counter]:
    """The day and month counters of one subject."""
    return [
        Counter(
            CounterKey(scope, subject, period_id(Period.DAY, now)),
            limits.requests_per_day,
            limits.tokens_per_day,
        ),
        Counter(
            CounterKey(scope, subject, period_id(Period.MONTH, now)),
            limits.requests_per_month,
            limits.tokens_per_month,
        ),
    ]


def exhausted(counter: Counter, figures: Figures, tokens: int) -> Measure | None:
    """Which limit of ``counter`` keeps a request needing ``tokens`` out; None if it fits.

    Tokens are let through while any remain (the reservation is not required to fit):
    otherwise a user with fewer tokens left than one answer's estimate could never use them.
    Requests needing no tokens (images) are not held back by a token limit.
    """
    if counter.requests and figures.requests + 1 > counter.requests:
        return Measure.REQUESTS
    if counter.tokens and tokens > 0 and figures.tokens + figures.reserved >= counter.tokens:
        return Measure.TOKENS
    return None


def refusal(
    counters: Sequence[Counter],
    figures: Mapping[CounterKey, Figures],
    tokens: int,
    now: datetime,
) -> Refusal | None:
    """The limit refusing a request, or None if every counter lets it through.

    Of several exhausted limits the one resetting last is named: only then may the user ask
    again.
    """
    found: list[Refusal] = []
    for counter in counters:
        measure = exhausted(counter, figures.get(counter.key, Figures()), tokens)
        if measure is None:
            continue
        period = period_of(counter.key.period)
        limit = counter.requests if measure is Measure.REQUESTS else counter.tokens
        found.append(Refusal(counter.key.scope, period, measure, limit, period_end(period, now)))
    return max(found, key=lambda r: r.resets_at) if found else None


def grant_in_turn(
    asked: Sequence[tuple[Sequence[Counter], int]],
    figures: Mapping[CounterKey, Figures],
    now: datetime,
) -> tuple[list[Refusal | None], dict[CounterKey, Figures]]:
    """Decide requests asked together (counters, tokens), in order: each one against the
    figures the requests granted before it left.

    Returns each request's refusal (None: granted) and every counter's figures after the
    granted ones, each holding one request more and its tokens reserved.
    """
    running = dict(figures)
    refusals: list[Refusal | None] = []
    for counters, tokens in asked:
        refused = refusal(counters, running, tokens, now)
        refusals.append(refused)
        if refused is not None:
            continue
        for counter in counters:
            before = running.get(counter.key, Figures())
            running[counter.key] = Figures(
                before.requests + 1, before.tokens, before.reserved + tokens
            )
    return refusals, running


def completion_allowance(providers: Sequence[ProviderConfig]) -> int:
    """Tokens reserved for one answer: the most any provider may send back.

    A provider's ``max_tokens``; the anthropic kind's own default without one; for others
    without one (no bound is sent) ``DEFAULT_COMPLETION_ALLOWANCE``.
    """
    return max(
        (_provider_allowance(provider) for provider in providers),
        default=DEFAULT_COMPLETION_ALLOWANCE,
    )


def _provider_allowance(provider: ProviderConfig) -> int:
    if provider.max_tokens is not None:
        return provider.max_tokens
    if provider.kind == "anthropic":
        return ANTHROPIC_MAX_TOKENS
    return DEFAULT_COMPLETION_ALLOWANCE
