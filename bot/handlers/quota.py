"""Quotas where a request would reach a provider: reserved before the call, settled after.

``check_quota`` starts the reservation at once, without awaiting it, so a conversation's
turns keep their arrival order in the queue; the refusal (if any) is told as soon as it is
known, and the turn, once it comes, waits for the outcome in ``QuotaCheck.charging``. While
a granted turn runs, what its answer uses is recorded with ``record_usage`` (a context
variable carries the charge through the answering code), and on leaving the turn it is
settled: the tokens used are counted, or, if nothing was answered, the request and the
reservation are given back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from telegram import Message
from telegram.constants import ChatType

from bot.config import QuotasConfig
from bot.handlers.context import BotContext
from bot.messages import Lang
from bot.quota_text import refusal_text
from bot.quotas import Counter, Refusal, completion_allowance, counters_for
from bot.storage.models import utcnow
from bot.storage.quotas import Hold, QuotaStore

logger = logging.getLogger(__name__)

GROUP_TYPES = (ChatType.GROUP, ChatType.SUPERGROUP)


@dataclass
class _Charge:
    """What the answers of one granted request used, to settle its hold with."""

    hold: Hold
    tokens: int = 0
    answered: bool = False


_CHARGE: ContextVar[_Charge | None] = ContextVar("quota_charge", default=None)


def record_usage(tokens: int, *, answered: bool) -> None:
    """Count ``tokens`` (and whether anything was answered) against this turn's quota hold."""
    charge = _CHARGE.get()
    if charge is None:
        return
    charge.tokens += tokens
    charge.answered = charge.answered or answered


class QuotaCheck:
    """One request's reservation, under way; ``None`` as the task means nothing is counted."""

    def __init__(
        self, quotas: QuotaStore | None, reservation: asyncio.Task[Hold | None] | None
    ) -> None:
        self._quotas = quotas
        self._reservation = reservation

    async def granted(self) -> bool:
        """Whether the request may go on (its refusal has been told otherwise)."""
        if self._reservation is None:
            return True
        return await asyncio.shield(self._reservation) is not None

    @asynccontextmanager
    async def charging(self) -> AsyncIterator[bool]:
        """Yield whether the request may go on; settle or release its hold on leaving."""
        if self._reservation is None or self._quotas is None:
            yield True
            return
        hold = await self._reservation
        if hold is None:
            yield False
            return
        charge = _Charge(hold)
        token = _CHARGE.set(charge)
        try:
            yield True
        finally:
            _CHARGE.reset(token)
            await asyncio.shield(_settle(self._quotas, charge))


# Users and chats Telegram never gives (its user ids are positive, its chat ids far above
# -2**62), for rehearsing requests at start-up.
_REHEARSAL_SUBJECTS = ((0, 0), (-(2**62), -(2**62)))


def rehearsal_requests(quotas: QuotasConfig) -> list[tuple[Counter, ...]]:
    """The counters of requests like real ones, in private chats and in groups, of two
    users and chats no request comes from; their users are admins, so none is refused."""
    admins = {user for user, _ in _REHEARSAL_SUBJECTS}
    now = utcnow()
    return [
        counters_for(quotas, user_id=user, chat_id=chat, group=group, admins=admins, now=now)
        for group in (False, True)
        for user, chat in _REHEARSAL_SUBJECTS
    ]


def check_quota(
    context: BotContext, message: Message, lang: Lang, *, prompt_tokens: int | None
) -> QuotaCheck:
    """Start reserving a request for the sender of ``message`` in its chat.

    With ``prompt_tokens`` (at most what the prompt holds) it also reserves those and the
    answer's allowance; None for a request whose tokens are not counted (images).
    """
    services = context.services
    quotas = services.quotas
    if quotas is None:
        return QuotaCheck(None, None)
    tokens = 0
    if prompt_tokens is not None:
        tokens = prompt_tokens + completion_allowance(services.config.providers)
    user = message.from_user
    counters = counters_for(
        services.config.quotas,
        user_id=user.id if user is not None else None,
        chat_id=message.chat_id,
        group=message.chat.type in GROUP_TYPES,
        admins=services.config.telegram.admins,
        now=utcnow(),
    )
    reservation = asyncio.get_running_loop().create_task(
        _reserve(context, quotas, message, lang, counters=counters, tokens=tokens),
        name=f"quota-{message.chat_id}-{message.message_id}",
    )
    return QuotaCheck(quotas, reservation)


async def _reserve(
    context: BotContext,
    quotas: QuotaStore,
    message: Message,
    lang: Lang,
    *,
    counters: tuple[Counter, ...],
    tokens: int,
) -> Hold | None:
    """The hold, or None once the user has been told which limit refuses it."""
    outcome = await quotas.reserve(counters, tokens)
    if isinstance(outcome, Refusal):
        context.services.metrics.quota_refusals.labels(
            outcome.scope.value, outcome.period.value, outcome.measure.value
        ).inc()
        logger.info(
            "quota refused a request in chat %s: %s %s per %s",
            message.chat_id,
            outcome.scope,
            outcome.measure,
            outcome.period,
        )
        await context.reply(message, refusal_text(outcome, lang, utcnow()))
        return None
    return outcome


async def _settle(quotas: QuotaStore, charge: _Charge) -> None:
    """Count what was used, or give everything back if nothing was answered."""
    try:
        if charge.answered:
            await quotas.settle(charge.hold, charge.tokens)
        else:
            await quotas.release(charge.hold)
    except Exception:  # the hold expires by itself; the answer must not fail for it
        logger.exception("could not settle a quota hold; it expires by itself")
