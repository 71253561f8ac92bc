"""SQLAlchemy's aiosqlite adapter, with one trip to the connection's thread per statement.

aiosqlite runs every call on one worker thread per connection, and SQLAlchemy's adapter makes
a trip there for each of: creating the cursor, executing, fetching, closing, committing and
rolling back. Each trip wakes that thread and then the event loop, which on a small machine
costs more CPU than the statement itself. Here a statement (cursor, execute, fetch, close)
is one function run in a single trip, and commit or rollback outside a transaction, where
sqlite3 would do nothing anyway, makes no trip at all.

Plugged in through ``create_async_engine(module=...)``; the dialect itself is SQLAlchemy's.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable
from threading import Thread
from typing import TYPE_CHECKING, Any, cast

import aiosqlite
from sqlalchemy.connectors.asyncio import (
    AsyncAdapt_dbapi_connection,
    AsyncAdapt_dbapi_cursor,
    AsyncIODBAPIConnection,
)
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import _DBAPICursorDescription

# What one statement leaves behind: description, rows, rowcount, lastrowid.
_Outcome = tuple[Any, list[Any], int, Any]


def _execute_one(connection: sqlite3.Connection, operation: str, parameters: Any) -> _Outcome:
    """Run one statement to completion on aiosqlite's thread (the only place it may run)."""
    cursor = connection.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _execute_many(
    connection: sqlite3.Connection, operation: str, seq_of_parameters: Any
) -> _Outcome:
    """Run ``executemany`` to completion on aiosqlite's thread."""
    cursor = connection.cursor()
    try:
        cursor.executemany(operation, seq_of_parameters)
        return cursor.description, [], cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose statements each take one trip; results are kept here, not in sqlite3."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    # Nothing to close on the thread: the sqlite3 cursor is closed by the trip that used it.
    _awaitable_cursor_close = False

    _adapt_connection: OneTripConnection

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        # The base class opens an aiosqlite cursor here (a trip); each statement opens its own.
        self._adapt_connection = cast(OneTripConnection, adapt_connection)
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: _DBAPICursorDescription | None = None
        self._rowcount = -1
        self._lastrowid: Any = None
        self._arraysize = 1

    @property
    def description(self) -> _DBAPICursorDescription | None:
        """The columns of the last statement's rows; None if it returned none."""
        return self._description

    @property
    def rowcount(self) -> int:
        """The rows the last statement changed, as sqlite3 counted them."""
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        """The rowid of the last row inserted, as sqlite3 reported it."""
        return self._lastrowid  # type: ignore[no-any-return]

    @property
    def arraysize(self) -> int:
        """How many rows ``fetchmany`` returns by default."""
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    def close(self) -> None:
        """Forget the rows not fetched; there is nothing open on the thread."""
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Any) -> None:
        """Ignored, as sqlite3 ignores it."""

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        return await self._run(_execute_one, operation, parameters)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        return await self._run(_execute_many, operation, seq_of_parameters)

    async def _run(
        self, statement: Callable[[sqlite3.Connection, str, Any], _Outcome], *args: Any
    ) -> OneTripCursor:
        adapt = self._adapt_connection
        async with adapt._execute_mutex:
            outcome = await adapt._trip(statement, adapt._connection._conn, *args)
        self._keep(outcome)
        return self

    def _keep(self, outcome: _Outcome) -> None:
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """The aiosqlite connection adapter, with one-trip cursors and no idle commit/rollback."""

    __slots__ = ("_seen", "_sent")

    _cursor_cls = OneTripCursor

    def __init__(self, dbapi: Any, connection: AsyncIODBAPIConnection) -> None:
        super().__init__(dbapi, connection)
        # Trips sent to the thread, and the last of them seen to finish. The thread runs
        # them in order, so once trip n is seen finished every earlier one has finished too.
        # While fewer are seen than sent (a wait was cancelled, a server-side cursor holds
        # its statement), work still to run may change sqlite3's transaction flag, so
        # commit and rollback take their trip rather than trust it.
        self._sent = 0
        self._seen = 0

    async def _trip(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on aiosqlite's thread and return its result."""
        self._sent += 1
        number = self._sent
        try:
            result = await self._connection._execute(fn, *args)
        except Exception:
            # It ran and failed, or was never sent: either way nothing is left running.
            self._seen = max(self._seen, number)
            raise
        self._seen = max(self._seen, number)
        return result

    def cursor(self, server_side: bool = False) -> AsyncAdapt_dbapi_cursor:
        """A cursor; a server-side one keeps its statement open between trips."""
        if server_side:
            self._sent += 1
        return super().cursor(server_side)

    def commit(self) -> None:
        """Commit, unless no transaction is open (sqlite3 would do nothing)."""
        if not self._idle():
            self._end(sqlite3.Connection.commit)

    def rollback(self) -> None:
        """Roll back, unless no transaction is open (sqlite3 would do nothing)."""
        if not self._idle():
            self._end(sqlite3.Connection.rollback)

    def _end(self, end: Callable[[sqlite3.Connection], None]) -> None:
        # As SQLAlchemy's adapter: nothing to end on a connection aiosqlite has closed.
        if self._connection._connection is None:
            return
        try:
            await_(self._trip(end, self._connection._conn))
        except Exception as error:
            self._handle_exception(error)

    def _idle(self) -> bool:
        """Whether sqlite3 has no transaction open, read here without a trip.

        A plain flag read (aiosqlite's own ``in_transaction`` does the same); safe because a
        pooled connection is used by one task at a time and no work is pending on it.
        """
        if self._seen < self._sent or self._connection._connection is None:
            return False
        try:
            return not self._connection.in_transaction
        except (sqlite3.Error, ValueError):
            # Closed: the real call raises what it always raised.
            return False


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite "DBAPI module", connecting with ``OneTripConnection``."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        """Open a connection (as SQLAlchemy's adapter does) wrapped in ``OneTripConnection``."""
        creator_fn = kw.pop("async_creator_fn", None)
        if creator_fn:
            connection = creator_fn(*arg, **kw)
        else:
            connection = self.aiosqlite.connect(*arg, **kw)
            # The worker thread must not keep the process alive at exit.
            if isinstance(connection, Thread):  # aiosqlite < 0.22: the connection is the thread
                connection.daemon = True
            else:
                connection._thread.daemon = True
        return OneTripConnection(self, await_(connection))


def one_trip_dbapi() -> OneTripDBAPI:
    """The module to pass as ``create_async_engine(module=...)`` for ``sqlite+aiosqlite``."""
    return OneTripDBAPI(aiosqlite, sqlite3)
