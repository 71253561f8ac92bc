"""One answer at a time per conversation: in one process, and across instances on PostgreSQL.

Two ``AdvisoryLocks`` on two engines stand for two instances of the bot.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from bot.inflight import ConversationKey, ConversationLocks
from bot.instances import lock_id, shared_parts
from bot.storage import advisory
from bot.storage.advisory import AdvisoryLocks, conversation_lock_id
from bot.storage.db import create_engine
from tests.factories import make_config
from tests.fakes.databases import rows_alone

KEY = (-1001234567890, 7)


async def takes(locks: ConversationLocks, key: ConversationKey) -> None:
    """Fail unless ``locks`` grants ``key`` within five seconds; then give it back."""
    async with asyncio.timeout(5), locks.hold(key):
        return


async def settle() -> None:
    """Let every task run as far as it can without waiting on I/O."""
    for _ in range(5):
        await asyncio.sleep(0)


# ------------------------------------------------------------------ the pure parts


def test_a_conversation_lock_id_is_a_stable_signed_64_bit_number():
    key = conversation_lock_id(-1001234567890, 7)
    assert key == conversation_lock_id(-1001234567890, 7)
    assert -(2**63) <= key < 2**63
    # Fixed by the hash, not by the process: every instance must compute the same key.
    assert key == lock_id((-1001234567890, 7))


def test_each_forum_topic_and_chat_has_its_own_lock_id():
    ids = {
        conversation_lock_id(-100123, None),
        conversation_lock_id(-100123, 1),
        conversation_lock_id(-100123, 2),
        conversation_lock_id(42, None),
        conversation_lock_id(43, None),
    }
    assert len(ids) == 5


def test_shared_locks_come_with_a_way_to_name_them():
    with pytest.raises(ValueError, match="lock_id"):
        ConversationLocks(None, lock_id)


async def test_in_process_the_second_answer_waits_and_is_told_once():
    locks = ConversationLocks()
    order: list[str] = []
    notices: list[str] = []
    release_first = asyncio.Event()

    async def answer(name: str, release: asyncio.Event | None) -> None:
        async with locks.hold(KEY, on_wait=lambda: notices.append(name)):
            order.append(f"{name} starts")
            if release is not None:
                await release.wait()
            order.append(f"{name} ends")

    first = asyncio.create_task(answer("first", release_first))
    await settle()
    second = asyncio.create_task(answer("second", None))
    await settle()
    assert locks.busy(KEY)
    assert order == ["first starts"]
    assert notices == ["second"]
    release_first.set()
    await asyncio.gather(first, second)
    assert order == ["first starts", "first ends", "second starts", "second ends"]
    assert not locks.busy(KEY)


async def test_in_process_try_hold_refuses_a_held_conversation():
    locks = ConversationLocks()
    async with locks.hold(KEY), locks.try_hold(KEY) as held:
        assert held is False
    async with locks.try_hold(KEY) as held:
        assert held is True


class InstanceLocks:
    """Shared locks of other instances, kept in this process: what PostgreSQL does across them."""

    def __init__(self) -> None:
        self.locks: dict[int, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key, *, on_wait=None):
        lock = self.locks.setdefault(key, asyncio.Lock())
        if lock.locked() and on_wait is not None:
            on_wait()
        async with lock:
            yield

    @contextlib.asynccontextmanager
    async def try_hold(self, key):
        lock = self.locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            yield True


async def test_an_answer_held_up_by_another_instance_is_told_once():
    shared = InstanceLocks()
    here = ConversationLocks(shared, lock_id)
    elsewhere = ConversationLocks(shared, lock_id)
    notices: list[str] = []
    answered: list[str] = []
    release = asyncio.Event()

    async def answer_elsewhere() -> None:
        async with elsewhere.hold(KEY):
            await release.wait()

    async def answer_here(name: str) -> None:
        async with here.hold(KEY, on_wait=lambda: notices.append(name)):
            answered.append(name)

    other = asyncio.create_task(answer_elsewhere())
    await settle()
    first = asyncio.create_task(answer_here("first"))
    await settle()
    second = asyncio.create_task(answer_here("second"))
    await settle()
    # "first" waits for the other instance; "second" waits for "first" in this process,
    # and is told so once, not again when its turn comes to wait for the other instance.
    assert notices == ["first", "second"]
    release.set()
    await asyncio.gather(other, first, second)
    assert notices == ["first", "second"]
    assert answered == ["first", "second"]


# -------------------------------------------------------- across instances (PostgreSQL)


@pytest.fixture
async def instances(postgres_url):
    """Two instances' conversation locks on one PostgreSQL database."""
    first = AdvisoryLocks(postgres_url, connections=4)
    second = AdvisoryLocks(postgres_url, connections=4)
    try:
        yield ConversationLocks(first, lock_id), ConversationLocks(second, lock_id)
    finally:
        await first.aclose()
        await second.aclose()


async def wait_for(predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_the_other_instance_waits_until_the_first_releases(instances):
    a, b = instances
    events: list[str] = []
    release = asyncio.Event()

    async def on_a() -> None:
        async with a.hold(KEY):
            events.append("a holds")
            await release.wait()
            events.append("a releases")

    async def on_b() -> None:
        async with b.hold(KEY, on_wait=lambda: events.append("b told to wait")):
            events.append("b holds")

    holder = asyncio.create_task(on_a())
    await wait_for(lambda: "a holds" in events)
    waiter = asyncio.create_task(on_b())
    await wait_for(lambda: "b told to wait" in events)
    await asyncio.sleep(0.2)
    assert "b holds" not in events, "instance b must not answer while a does"
    release.set()
    await asyncio.gather(holder, waiter)
    assert events == ["a holds", "b told to wait", "a releases", "b holds"]


async def test_other_conversations_do_not_wait(instances):
    a, b = instances
    async with a.hold(KEY):
        await takes(b, (KEY[0], KEY[1] + 1))
        await takes(b, (42, None))


async def test_a_holder_cancelled_mid_answer_releases_the_lock(instances):
    a, b = instances
    holding = asyncio.Event()

    async def on_a() -> None:
        async with a.hold(KEY):
            holding.set()
            await asyncio.sleep(3600)

    holder = asyncio.create_task(on_a())
    await holding.wait()
    holder.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holder
    await takes(b, KEY)


async def test_a_waiter_cancelled_while_waiting_keeps_no_lock(instances):
    a, b = instances
    told = asyncio.Event()
    release = asyncio.Event()

    async def on_a() -> None:
        async with a.hold(KEY):
            await release.wait()

    async def on_b() -> None:
        async with b.hold(KEY, on_wait=told.set):
            await asyncio.sleep(3600)

    holder = asyncio.create_task(on_a())
    await settle()
    await asyncio.sleep(0.2)
    waiter = asyncio.create_task(on_b())
    await told.wait()
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    # Had the cancelled wait left the lock granted to b's session, a could not take it again.
    await takes(a, KEY)
    await takes(b, KEY)


async def test_a_dead_instance_leaves_no_lock_behind(postgres_url, instances):
    a, _ = instances
    # Another process holding the lock on its own session, then dying with its connection.
    engine = create_engine(postgres_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        connection = await engine.connect()
        await connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_id(KEY)})
        async with a.try_hold(KEY) as held:
            assert held is False
        await connection.invalidate()
        await connection.close()
    finally:
        await engine.dispose()
    await takes(a, KEY)


async def test_try_hold_sees_a_conversation_held_by_another_instance(instances):
    a, b = instances
    async with a.hold(KEY), b.try_hold(KEY) as held:
        assert held is False
    async with b.try_hold(KEY) as held:
        assert held is True


async def terminate_lock_sessions(postgres_url: str) -> int:
    """End every other session of the database holding an advisory lock; how many."""
    terminated = await rows_alone(
        postgres_url,
        "SELECT pg_terminate_backend(pid) FROM pg_locks"
        " WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " GROUP BY pid",
    )
    return len(terminated)


async def test_a_lock_connection_killed_mid_answer_is_noticed_and_its_locks_retaken(postgres_url):
    first = AdvisoryLocks(postgres_url, connections=1)
    second = AdvisoryLocks(postgres_url, connections=1)
    a, b = ConversationLocks(first, lock_id), ConversationLocks(second, lock_id)
    try:
        async with a.hold(KEY), a.hold((42, None)):
            # As in a database restart: the session holding the locks is gone.
            assert await terminate_lock_sessions(postgres_url) == 1
            await wait_for(lambda: first.losses == 1)
            # Opened again with both locks taken anew: the other instance still waits.
            await wait_for(lambda: first.holds(lock_id(KEY)) and first.holds(lock_id((42, None))))
            async with b.try_hold(KEY) as held:
                assert held is False
        await takes(b, KEY)
        await takes(b, (42, None))
        await takes(a, KEY)
    finally:
        await first.aclose()
        await second.aclose()


async def test_fifty_conversations_are_held_at_once_on_two_connections(postgres_url):
    locks = AdvisoryLocks(postgres_url, connections=2)
    other_locks = AdvisoryLocks(postgres_url, connections=1)
    other = ConversationLocks(other_locks, lock_id)
    conversations = ConversationLocks(locks, lock_id)
    keys = [(-100_000 - n, None) for n in range(50)]
    all_held = asyncio.Event()
    release = asyncio.Event()
    held = 0

    async def answer(key: ConversationKey) -> None:
        nonlocal held
        async with conversations.hold(key):
            held += 1
            if held == len(keys):
                all_held.set()
            await release.wait()

    try:
        answers = [asyncio.create_task(answer(key)) for key in keys]
        async with asyncio.timeout(10):
            await all_held.wait()
        for key in keys[:5]:
            async with other.try_hold(key) as free:
                assert free is False
        release.set()
        await asyncio.gather(*answers)
        await takes(other, keys[0])
    finally:
        await locks.aclose()
        await other_locks.aclose()


async def test_a_waiter_hears_of_the_release_and_does_not_wait_for_the_poll(
    postgres_url, monkeypatch
):
    # A poll this slow would make the wait below time out: the announcement must wake it.
    monkeypatch.setattr(advisory, "POLL_SECONDS", 60.0)
    first = AdvisoryLocks(postgres_url, connections=2)
    second = AdvisoryLocks(postgres_url, connections=2)
    a, b = ConversationLocks(first, lock_id), ConversationLocks(second, lock_id)
    told = asyncio.Event()
    try:
        async with a.hold(KEY):
            # Both connections of the waiting instance up, listening included.
            await takes(b, (42, None))
            await takes(b, (43, None))
            waiter = asyncio.create_task(takes_after(b, KEY, told))
            await told.wait()
        await waiter
    finally:
        await first.aclose()
        await second.aclose()


async def takes_after(locks: ConversationLocks, key: ConversationKey, told: asyncio.Event) -> None:
    """Like ``takes``, with ``told`` set when it has to wait."""
    async with asyncio.timeout(5), locks.hold(key, on_wait=told.set):
        return


async def test_a_waiter_cancelled_while_trying_the_lock_keeps_none(postgres_url):
    locks = AdvisoryLocks(postgres_url, connections=1)
    other = AdvisoryLocks(postgres_url, connections=1)
    try:
        # Cancelled at every point of a first hold: none of them may leave the lock held.
        for step in range(20):
            attempt = asyncio.create_task(takes(ConversationLocks(locks, lock_id), KEY))
            # Now before, now during, now after the statement that takes the lock.
            await asyncio.sleep(step / 2000)
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attempt
        await wait_for(lambda: not locks.holds(lock_id(KEY)))
        await takes(ConversationLocks(other, lock_id), KEY)
    finally:
        await locks.aclose()
        await other.aclose()


async def other_sessions(postgres_url: str) -> int:
    """How many other sessions the test database has."""
    [(count,)] = await rows_alone(
        postgres_url,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return int(count)


async def test_started_locks_have_their_connections_open_before_the_first_lock(postgres_url):
    locks = AdvisoryLocks(postgres_url, connections=3)
    try:
        before = await other_sessions(postgres_url)
        await locks.start()
        # Open already: the first message's turn does not wait for a session to start.
        assert await other_sessions(postgres_url) == before + 3
        await takes(ConversationLocks(locks, lock_id), KEY)
        assert await other_sessions(postgres_url) == before + 3
    finally:
        await locks.aclose()


async def test_an_instance_on_postgresql_opens_its_lock_connections_at_start_up(postgres_url):
    config = make_config(
        telegram_base_url="http://127.0.0.1:9/bot",
        telegram_file_url="http://127.0.0.1:9/file/bot",
        provider_base_url="http://127.0.0.1:9/v1",
        database=postgres_url,
    )
    before = await other_sessions(postgres_url)
    async with shared_parts(config) as shared:
        assert shared.conversations is not None
        # Its lock connections, and the stop relay's.
        assert await other_sessions(postgres_url) == before + config.database.lock_connections + 1


async def test_start_stops_waiting_for_a_database_that_never_answers(monkeypatch):
    monkeypatch.setattr(advisory, "OPEN_WAIT_SECONDS", 0.2)

    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Takes the connection and never says a word: a server too busy to start sessions.
        accepted.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    locks = AdvisoryLocks(f"postgresql+asyncpg://bot@127.0.0.1:{port}/test")
    try:
        async with asyncio.timeout(2):
            await locks.start()
        # Start-up goes on; a lock asked for meanwhile waits for its connection.
        waiting = asyncio.ensure_future(takes(ConversationLocks(locks, lock_id), KEY))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    finally:
        async with asyncio.timeout(2):
            await locks.aclose()
        server.close()
        for writer in accepted:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()
