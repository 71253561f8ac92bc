"""Who may use the bot at all, and memory of what was already handled or said.

Pure logic: the handlers in ``bot.handlers.gate`` apply it to updates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

# Enough to cover every update a restart or a webhook retry can deliver again.
SEEN_UPDATES = 10_000
# Refused users told so, remembered so that each is told once; oldest forgotten first.
TOLD_USERS = 10_000


class AllowList:
    """``allowed_users`` anywhere, anyone in ``allowed_chats``; both empty lets everyone in."""

    def __init__(
        self, admins: tuple[int, ...], users: tuple[int, ...], chats: tuple[int, ...]
    ) -> None:
        self._admins = frozenset(admins)
        self._users = frozenset(users)
        self._chats = frozenset(chats)

    @property
    def open(self) -> bool:
        """Whether no list restricts the bot."""
        return not self._users and not self._chats

    def allows(self, user_id: int | None, chat_id: int | None) -> bool:
        """Whether this user in this chat may use the bot."""
        if self.open:
            return True
        if user_id is not None and (user_id in self._admins or user_id in self._users):
            return True
        return chat_id is not None and chat_id in self._chats


class RecentKeys:
    """A bounded set of recently seen keys, oldest dropped first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def add(self, key: Hashable) -> bool:
        """Remember ``key``; False if it was already remembered."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return True
