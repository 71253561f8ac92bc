"""Stop presses carried to the instance streaming the answer, over PostgreSQL NOTIFY."""

from __future__ import annotations

import asyncio

import pytest

from bot import stop_relay as stop_relay_module
from bot.inflight import StopOutcome, StopSignals
from bot.stop_relay import StopAsk, StopRelay, StopReply, decode, encode, request_stop
from tests.fakes.databases import rows_alone

# ------------------------------------------------------------------ the pure parts


def test_asks_and_replies_survive_the_payload_round_trip():
    ask = StopAsk("instance-a", "ask-1", 17, 42, privileged=False)
    reply = StopReply("instance-a", "ask-1", StopOutcome.NOT_ALLOWED)
    anonymous = StopAsk("instance-b", "ask-2", 18, None, privileged=True)
    assert decode(encode(ask)) == ask
    assert decode(encode(reply)) == reply
    assert decode(encode(anonymous)) == anonymous


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json",
        "[1, 2]",
        '{"something": "else"}',
        '{"ask": "a", "from": "x", "answer": "17", "user": 1, "privileged": false}',
        '{"ask": "a", "from": "x", "answer": true, "user": 1, "privileged": false}',
        '{"ask": "a", "from": "x", "answer": 17, "user": "1", "privileged": false}',
        '{"ask": "a", "from": "x", "answer": 17, "user": 1, "privileged": "no"}',
        '{"reply": "a", "to": "x", "outcome": "exploded"}',
        '{"reply": "a", "to": 3, "outcome": "stopping"}',
    ],
)
def test_malformed_payloads_are_ignored(payload):
    assert decode(payload) is None


async def test_an_answer_streaming_here_is_stopped_without_asking_anyone():
    signals = StopSignals()
    with signals.track(5, 42) as stopped:
        outcome = await request_stop(signals, None, 5, 42, privileged=False)
        assert outcome is StopOutcome.STOPPING
        assert stopped.is_set()


# -------------------------------------------------------- across instances (PostgreSQL)


@pytest.fixture
async def relays(postgres_url, monkeypatch):
    """Two instances' stop signals, each with its relay on one database."""
    monkeypatch.setattr(stop_relay_module, "REPLY_SECONDS", 1.0)
    monkeypatch.setattr(stop_relay_module, "CHECK_SECONDS", 0.5)
    signals_a, signals_b = StopSignals(), StopSignals()
    relay_a, relay_b = StopRelay(postgres_url, signals_a), StopRelay(postgres_url, signals_b)
    await relay_a.start()
    await relay_b.start()
    try:
        yield (signals_a, relay_a), (signals_b, relay_b)
    finally:
        await relay_a.aclose()
        await relay_b.aclose()


async def test_a_stop_pressed_on_another_instance_stops_the_answer(relays):
    (signals_a, _), (signals_b, relay_b) = relays
    with signals_a.track(7, 42) as stopped:
        outcome = await request_stop(signals_b, relay_b, 7, 42, privileged=False)
        assert outcome is StopOutcome.STOPPING
        assert stopped.is_set()


async def test_only_the_asker_or_an_admin_may_stop_it_from_another_instance(relays):
    (signals_a, _), (signals_b, relay_b) = relays
    with signals_a.track(8, 42) as stopped:
        outcome = await request_stop(signals_b, relay_b, 8, 99, privileged=False)
        assert outcome is StopOutcome.NOT_ALLOWED
        assert not stopped.is_set()
        outcome = await request_stop(signals_b, relay_b, 8, 99, privileged=True)
        assert outcome is StopOutcome.STOPPING
        assert stopped.is_set()


async def test_an_answer_no_instance_streams_is_reported_finished(relays):
    _, (signals_b, relay_b) = relays
    outcome = await request_stop(signals_b, relay_b, 9, 42, privileged=False)
    assert outcome is StopOutcome.FINISHED


async def test_the_relay_listens_again_after_losing_its_connection(relays, postgres_url):
    (signals_a, _), (signals_b, relay_b) = relays
    # Every listener of the channel loses its session, as in a database restart.
    terminated = await rows_alone(
        postgres_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    assert len(terminated) == 2
    with signals_a.track(10, 42) as stopped:
        async with asyncio.timeout(10):
            while True:
                outcome = await request_stop(signals_b, relay_b, 10, 42, privileged=False)
                if outcome is StopOutcome.STOPPING:
                    break
                await asyncio.sleep(0.2)
        assert stopped.is_set()
