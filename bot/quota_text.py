"""Pure: quota refusals and /usage figures in words, in the user's language."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from bot.messages import Lang, text
from bot.quotas import Figures, Period, Ranked, Refusal, period_end

SECONDS_PER_MINUTE = 60
MINUTES_PER_HOUR = 60
HOURS_PER_DAY = 24


def format_wait(seconds: float, lang: Lang) -> str:
    """A wait as days and hours, hours and minutes, or minutes (rounded up, at least 1)."""
    minutes = max(1, math.ceil(seconds / SECONDS_PER_MINUTE))
    hours, minutes = divmod(minutes, MINUTES_PER_HOUR)
    days, hours = divmod(hours, HOURS_PER_DAY)
    if days:
        return text("quota.wait.days", lang, days=days, hours=hours)
    if hours:
        return text("quota.wait.hours", lang, hours=hours, minutes=minutes)
    return text("quota.wait.minutes", lang, minutes=minutes)


def reset_label(period: Period, resets_at: datetime) -> str:
    """When a period resets: the time for a day, the date and time for a month (UTC)."""
    if period is Period.DAY:
        return resets_at.strftime("%H:%M UTC")
    return resets_at.strftime("%Y-%m-%d %H:%M UTC")


def refusal_text(refusal: Refusal, lang: Lang, now: datetime) -> str:
    """Which limit refused the request, and when it resets."""
    return text(
        f"quota.{refusal.scope.value}.{refusal.measure.value}",
        lang,
        limit=f"{refusal.limit:,}",
        period=text(f"quota.period.{refusal.period.value}", lang),
        wait=format_wait((refusal.resets_at - now).total_seconds(), lang),
        reset=reset_label(refusal.period, refusal.resets_at),
    )


def period_lines(
    period: Period,
    figures: Figures,
    lang: Lang,
    now: datetime,
    *,
    requests_limit: int = 0,
    tokens_limit: int = 0,
) -> list[str]:
    """One period's heading and its requests and tokens against their limits (0: none)."""
    resets_at = period_end(period, now)
    heading = text(
        f"usage.{period.value}",
        lang,
        wait=format_wait((resets_at - now).total_seconds(), lang),
        reset=reset_label(period, resets_at),
    )
    requests = text("usage.requests", lang, used=f"{figures.requests:,}") + _against(
        figures.requests, requests_limit, lang
    )
    tokens = text("usage.tokens", lang, used=f"{figures.tokens:,}") + _against(
        figures.tokens + figures.reserved, tokens_limit, lang
    )
    if figures.reserved:
        tokens += text("usage.held", lang, held=f"{figures.reserved:,}")
    return [heading, requests, tokens]


def _against(used: int, limit: int, lang: Lang) -> str:
    if not limit:
        return text("usage.unlimited", lang)
    return text("usage.limit", lang, limit=f"{limit:,}", left=f"{max(0, limit - used):,}")


def ranking_lines(ranked: Sequence[Ranked], lang: Lang) -> list[str]:
    """The ranked users or chats, one line each; a line saying there are none."""
    if not ranked:
        return [text("usage.nobody", lang)]
    return [
        text(
            "usage.rank",
            lang,
            n=n,
            name=subject_name(entry.subject, entry.title, lang),
            requests=f"{entry.figures.requests:,}",
            tokens=f"{entry.figures.tokens:,}",
        )
        for n, entry in enumerate(ranked, start=1)
    ]


def subject_name(subject: int, title: str | None, lang: Lang) -> str:
    """A chat by its title and id, a user by their id."""
    if title:
        return f"{title} ({subject})"
    return text("usage.user_name", lang, id=subject) if subject > 0 else str(subject)
