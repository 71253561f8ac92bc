"""Pure: when may the next Telegram call go out, per chat and for the whole bot."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

# After a 429 a chat's interval is widened for this long, so the chat is not pushed
# straight back into the limit that just tripped.
PENALTY_SECONDS = 60.0
PENALTY_FACTOR = 2.0
# How long a slot given up by a chat's cancelled call waits for that chat's next call (the
# final text, which follows at once) before any chat may take it.
HANDOVER_SECONDS = 0.05


@dataclass(slots=True)
class ChatBudget:
    """The pace of one chat: a token bucket of ``1 + reserve`` calls refilled every ``interval``.

    Kept as the time the next evenly spaced call may go (``next_at``). Progress calls
    (drafts, edits) wait for it, so they never spend the reserve; a must-deliver call (the
    final text) may go up to ``reserve`` intervals sooner. Either way, at most
    ``1 + reserve + t / interval`` calls go out in any ``t`` seconds. A 429 holds the chat,
    then widens its interval and leaves the reserve empty until the penalty is over.
    """

    interval: float
    reserve: int = 0
    next_at: float = 0.0
    hold_until: float = 0.0
    penalty_until: float = 0.0

    def delay(self, now: float, *, must_deliver: bool = False) -> float:
        """Seconds to wait before the next call (a must-deliver one if so) may go out."""
        ready = self.next_at - (self.slack(now) if must_deliver else 0.0)
        return max(0.0, ready - now, self.hold_until - now)

    def slack(self, now: float) -> float:
        """How much sooner than the spacing a must-deliver call may go at ``now``."""
        return 0.0 if now < self.penalty_until else self.reserve * self.interval

    def idle(self, now: float) -> bool:
        """Whether forgetting this chat would change nothing: no wait, hold or penalty left."""
        return now >= max(self.next_at, self.hold_until, self.penalty_until)

    def spacing(self, now: float, interval: float | None = None) -> float:
        """The gap a call at ``now`` leaves before the next: ``interval`` (else the chat's
        own), widened while a penalty lasts."""
        factor = PENALTY_FACTOR if now < self.penalty_until else 1.0
        return (self.interval if interval is None else interval) * factor

    def sent(self, now: float, interval: float | None = None) -> None:
        """Record a call that went out at ``now``; ``interval`` overrides the usual spacing."""
        # A call that went early spent the reserve: the next ones keep the spacing behind it.
        self.next_at = max(self.next_at, now) + self.spacing(now, interval)

    def retry_after(self, now: float, seconds: float) -> None:
        """Record a 429: hold the chat for ``seconds`` and widen its interval for a while."""
        self.hold_until = max(self.hold_until, now + seconds)
        self.penalty_until = self.hold_until + PENALTY_SECONDS


@dataclass(slots=True)
class GlobalBudget:
    """Evenly spaced slots at ``rate`` calls a second, handed out first come, first served.

    A caller that gives up before its slot (a cancelled edit) releases it, and the next
    caller takes it, so cancellations never leave the budget idle. A slot released for a
    chat (its update cancelled for the final text) is kept for that chat's next call for
    ``HANDOVER_SECONDS`` first: otherwise a chat with no slot queued takes it, and the final
    text of the chat that gave it up waits at the back of the queue. A chat whose slot
    passed during the hand-over still takes it, at once.
    """

    rate: float
    next_slot: float = 0.0
    _released: list[float] = field(default_factory=list)
    # Chat -> (slot, until when only that chat may take it).
    _handed_over: dict[int, tuple[float, float]] = field(default_factory=dict)

    def reserve(self, now: float, chat_id: int | None = None) -> float:
        """Reserve a slot for ``chat_id``'s call; return its time."""
        self._expire_handovers(now)
        kept = self._handed_over.pop(chat_id, None) if chat_id is not None else None
        if kept is not None:
            # Its time may have passed while the chat got its final text ready: going a
            # moment late only delays a call the budget had room for.
            return max(kept[0], now)
        while self._released and self._released[0] < now:
            heapq.heappop(self._released)
        if self._released:
            return heapq.heappop(self._released)
        slot = max(now, self.next_slot)
        self.next_slot = slot + 1.0 / self.rate
        return slot

    def release(self, slot: float, *, chat_id: int | None = None, now: float = 0.0) -> None:
        """Give back an unused slot; with ``chat_id``, kept for that chat's next call a while."""
        if chat_id is None:
            heapq.heappush(self._released, slot)
            return
        previous = self._handed_over.pop(chat_id, None)
        if previous is not None:
            heapq.heappush(self._released, previous[0])
        self._handed_over[chat_id] = (slot, now + HANDOVER_SECONDS)

    def _expire_handovers(self, now: float) -> None:
        """Slots their chats did not take back in time go to everyone."""
        for chat_id, (slot, until) in list(self._handed_over.items()):
            if until <= now:
                del self._handed_over[chat_id]
                heapq.heappush(self._released, slot)
