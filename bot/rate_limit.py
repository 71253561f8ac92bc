"""Per-user request rate: at most N requests in any 60 seconds, with the time to wait."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0
# Past this many users, those with no request in the window are forgotten.
PRUNE_ABOVE_USERS = 10_000


class RateLimiter:
    """A sliding window of each user's recent requests; pure state with an injectable clock."""

    def __init__(
        self,
        per_minute: int,
        *,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self._window = window
        self._clock = clock
        self._requests: dict[int, deque[float]] = {}

    def take(self, user_id: int) -> float | None:
        """Count a request of ``user_id``; None if allowed, else the seconds until it would be.

        A refused request is not counted, so waiting the time given is always enough.
        """
        if self.per_minute <= 0:
            return None
        now = self._clock()
        recent = self._requests.get(user_id)
        if recent is None:
            if len(self._requests) >= PRUNE_ABOVE_USERS:
                self._prune(now)
            recent = self._requests[user_id] = deque()
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return recent[0] + self._window - now
        recent.append(now)
        return None

    def _prune(self, now: float) -> None:
        for user_id, recent in list(self._requests.items()):
            if not recent or recent[-1] <= now - self._window:
                del self._requests[user_id]
