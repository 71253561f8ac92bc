"""Who may change a chat's settings: bot admins everywhere, chat administrators in their chat.

Telegram is asked with getChatMember; answers are cached for a few minutes, since a
settings menu can produce several checks in a row and admin lists rarely change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from telegram import Bot
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError

logger = logging.getLogger(__name__)

ADMIN_CACHE_SECONDS = 300.0
# Bounded so a bot in many groups does not grow without limit; oldest entries go first.
ADMIN_CACHE_ENTRIES = 10_000
_ADMIN_STATUSES = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})


class AdminCache:
    """Remembers whether a user administers a chat, for ``ttl`` seconds."""

    def __init__(
        self, ttl: float = ADMIN_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[int, int], tuple[bool, float]] = {}

    def get(self, chat_id: int, user_id: int) -> bool | None:
        """The cached answer, or None when unknown or expired."""
        entry = self._entries.get((chat_id, user_id))
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def put(self, chat_id: int, user_id: int, is_admin: bool) -> None:
        """Remember an answer."""
        if len(self._entries) >= ADMIN_CACHE_ENTRIES:
            del self._entries[next(iter(self._entries))]
        self._entries[chat_id, user_id] = (is_admin, self._clock() + self._ttl)


class Access:
    """Decides whether a user may manage a chat."""

    def __init__(self, bot_admins: tuple[int, ...], cache: AdminCache | None = None) -> None:
        self._bot_admins = frozenset(bot_admins)
        self._cache = cache or AdminCache()

    def is_bot_admin(self, user_id: int | None) -> bool:
        """Whether ``user_id`` is one of the bot's admins from the configuration."""
        return user_id is not None and user_id in self._bot_admins

    async def may_manage(self, bot: Bot, chat_id: int, chat_type: str, user_id: int | None) -> bool:
        """Bot admins anywhere; anyone in their own private chat; chat administrators."""
        if user_id is None:
            return False
        if self.is_bot_admin(user_id) or chat_type == ChatType.PRIVATE:
            return True
        cached = self._cache.get(chat_id, user_id)
        if cached is not None:
            return cached
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            # Unknown is not yes: refuse, but do not remember a refusal Telegram did not give.
            logger.warning("getChatMember failed in chat %s: %s", chat_id, exc)
            return False
        is_admin = member.status in _ADMIN_STATUSES
        self._cache.put(chat_id, user_id, is_admin)
        return is_admin
