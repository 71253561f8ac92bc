"""Two bot processes behind one webhook URL, sharing one PostgreSQL database and one Redis.

A small round-robin forwarder stands for the load balancer: Telegram (the fake) posts every
update to it, and it hands them to instance A and B in turn.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.e2e import bot_texts, free_port, stop_data, stored_answers, until
from tests.factories import API_KEY, MODEL, TOKEN
from tests.fakes.provider import Chunk, Delay, FakeProvider, Role, paced_stream
from tests.fakes.redis_server import RedisSpace
from tests.fakes.telegram import FakeTelegram, FloodLimits

ROOT = Path(__file__).resolve().parent.parent
SECRET = "several-instances_1"
GLOBAL_RATE = 4
# Headers the forwarder leaves to aiohttp, which sets them for the new request.
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass
class RoundRobin:
    """Forwards each POST to the next instance, with its headers; passes the answer back."""

    targets: list[str]
    routed: dict[int, int] = field(default_factory=dict)
    """update_id -> index of the instance it went to (the last, if retried)."""
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    port: int = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._forward)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/telegram"

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        index = next(self._turn) % len(self.targets)
        self.routed[int(json.loads(body)["update_id"])] = index
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        assert self._session is not None
        try:
            async with self._session.post(
                self.targets[index] + request.path_qs, data=body, headers=headers
            ) as response:
                return web.Response(status=response.status, body=await response.read())
        except aiohttp.ClientError:
            return web.Response(status=502)


@dataclass
class Instance:
    """One bot process."""

    process: asyncio.subprocess.Process
    ops_port: int
    log: Path


@dataclass
class Cluster:
    """Both instances, the forwarder, and what they share."""

    instances: list[Instance]
    forwarder: RoundRobin
    database_url: str

    def logs(self) -> str:
        return "\n".join(
            f"--- instance {i}:\n{inst.log.read_text()[-4000:]}"
            for i, inst in enumerate(self.instances)
        )


def write_config(
    path: Path,
    *,
    telegram: FakeTelegram,
    provider: FakeProvider,
    database_url: str,
    redis: RedisSpace,
    webhook_url: str,
    port: int,
    ops_port: int,
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "telegram": {
                    "token": "${TEST_BOT_TOKEN}",
                    "base_url": telegram.base_url,
                    "base_file_url": telegram.base_file_url,
                    "mode": "webhook",
                    "webhook": {
                        "url": webhook_url,
                        "listen": "127.0.0.1",
                        "port": port,
                        "secret_token": SECRET,
                        "max_connections": 20,
                    },
                },
                "database": {"url": database_url},
                "redis": {"url": redis.url, "prefix": redis.prefix},
                "providers": [
                    {
                        "name": "fake",
                        "kind": "openai",
                        "base_url": provider.base_url,
                        "api_key": "${TEST_API_KEY}",
                    }
                ],
                "models": {"chat": MODEL},
                "streaming": {"drafts": False, "global_per_second": GLOBAL_RATE},
                "ops": {"listen": "127.0.0.1", "port": ops_port},
            }
        )
    )
    return path


async def ready(ops_port: int) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{ops_port}/healthz") as response,
        ):
            return response.status == 200
    except aiohttp.ClientError:
        return False


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    """The fake Bot API, enforcing a bot-wide budget of GLOBAL_RATE calls a second."""
    limits = FloodLimits(global_per_second=GLOBAL_RATE, global_burst=2)
    async with FakeTelegram(token=TOKEN, flood=limits) as fake:
        yield fake


@pytest.fixture
async def cluster(telegram, provider, postgres_url, redis_space, tmp_path):
    """Two instances started together on one database and Redis, behind one forwarder."""
    ports = [free_port() for _ in range(2)]
    forwarder = RoundRobin([f"http://127.0.0.1:{port}" for port in ports])
    await forwarder.start()
    instances: list[Instance] = []
    try:
        for i, port in enumerate(ports):
            ops_port = free_port()
            config = write_config(
                tmp_path / f"instance{i}.yaml",
                telegram=telegram,
                provider=provider,
                database_url=postgres_url,
                redis=redis_space,
                webhook_url=forwarder.url,
                port=port,
                ops_port=ops_port,
            )
            log = tmp_path / f"instance{i}.log"
            with log.open("wb") as output:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot",
                    "run",
                    "--config",
                    str(config),
                    cwd=ROOT,
                    env={**os.environ, "TEST_BOT_TOKEN": TOKEN, "TEST_API_KEY": API_KEY},
                    stdout=output,
                    stderr=output,
                )
            instances.append(Instance(process, ops_port, log))
        made = Cluster(instances, forwarder, postgres_url)
        await wait_ready(made)
        yield made
    finally:
        for instance in instances:
            if instance.process.returncode is None:
                instance.process.send_signal(signal.SIGTERM)
        for instance in instances:
            try:
                await asyncio.wait_for(instance.process.wait(), 20)
            except TimeoutError:
                instance.process.kill()
                await instance.process.wait()
        await forwarder.close()


async def wait_ready(cluster: Cluster, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for instance in cluster.instances:
        while not await ready(instance.ops_port):
            if instance.process.returncode is not None or loop.time() > deadline:
                pytest.fail(f"an instance did not become ready\n{cluster.logs()}")
            await asyncio.sleep(0.1)


async def answers_stored(database_url: str, count: int, timeout: float = 20.0) -> list[Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        answers = await stored_answers(database_url)
        if sum(status != "streaming" for _, status in answers) >= count:
            return answers
        assert loop.time() < deadline, f"answers not stored: {answers}"
        await asyncio.sleep(0.1)


QUEUED = "⏳ I'll answer this as soon as I've finished the answer before it."


async def test_two_messages_of_one_chat_on_two_instances_are_answered_one_after_the_other(
    telegram, provider, cluster
):
    first_answer = [f"first{i} " for i in range(6)]
    provider.enqueue(*paced_stream(first_answer, 2.0))
    first = telegram.user_sends("Tell me one thing")
    await provider.wait_for_requests(1, timeout=20)
    second = telegram.user_sends("And another")
    await until(lambda: second in cluster.forwarder.routed, timeout=10)
    updates = {first, second}
    assert len({cluster.forwarder.routed[u] for u in updates}) == 2, "one per instance"

    try:
        answers = await answers_stored(cluster.database_url, 2)
    except AssertionError:
        for i in cluster.instances:
            i.process.send_signal(signal.SIGUSR1)
        await asyncio.sleep(1)
        raise
    assert len(provider.requests) == 2
    assert provider.requests[1].at >= provider.ended_at[0], (
        "the second request must wait for the first stream to end"
    )
    # The second request carries the first answer whole: it was stored before it was built.
    second_history = [m["content"] for m in provider.requests[1].json["messages"]]
    assert second_history[-3:] == ["Tell me one thing", "".join(first_answer), "And another"]
    assert answers == [
        ("".join(first_answer), "complete"),
        ("echo: And another", "complete"),
    ]
    texts = bot_texts(telegram, 42)
    assert QUEUED in texts, "the instance that waited says so"
    assert texts[-2:] == ["".join(first_answer).strip(), "echo: And another"]


async def test_many_chats_on_two_instances_share_one_flood_budget(telegram, provider, cluster):
    chats = list(range(501, 507))
    provider.default = lambda _request: paced_stream([f"piece{i} " for i in range(12)], 4.0)
    for chat_id in chats:
        telegram.user_sends(f"stream {chat_id}", user_id=chat_id)
    await until(lambda: len(cluster.forwarder.routed) == len(chats), timeout=10)
    assert set(cluster.forwarder.routed.values()) == {0, 1}

    await answers_stored(cluster.database_url, len(chats), timeout=60)
    expected = "".join(f"piece{i} " for i in range(12)).strip()
    for chat_id in chats:
        await until(lambda c=chat_id: bot_texts(telegram, c)[-1:] == [expected], timeout=30)

    counted = telegram.flood.counted_methods if telegram.flood else frozenset()
    calls = [c for c in telegram.calls if c.method in counted]
    assert not [c for c in calls if c.error_code == 429], "no call may meet flood control"
    times = sorted(c.at for c in calls)
    most = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    # Slots are spaced by the budget; one more allows for the arrival jitter of loopback HTTP.
    assert most <= GLOBAL_RATE + 1
    edits = [c for c in calls if c.method == "editMessageText"]
    assert edits, "the answers streamed with edits"


async def test_a_stop_pressed_through_the_other_instance_stops_the_answer(
    telegram, provider, cluster
):
    provider.enqueue(Role(), Chunk("Part one. "), Delay(0.3), Chunk("Part two."), Delay(60))
    asked = telegram.user_sends("/chat a long story")
    await until(lambda: "Part two." in "".join(bot_texts(telegram, 42)), timeout=20)
    data, message_id = stop_data(telegram, 42)
    telegram.user_presses(data, message_id=message_id)
    await until(lambda: len(cluster.forwarder.routed) == 2, timeout=10)
    pressed = max(cluster.forwarder.routed)
    assert cluster.forwarder.routed[pressed] != cluster.forwarder.routed[asked]

    await until(lambda: any("Stopped" in t for t in bot_texts(telegram, 42)), timeout=20)
    assert bot_texts(telegram, 42)[-1] == "Part one. Part two.\n\n⏹ Stopped."
    (answered,) = telegram.calls_to("answerCallbackQuery")
    assert answered.params["text"] == "Stopping…"
    assert await answers_stored(cluster.database_url, 1) == [("Part one. Part two.", "stopped")]
    assert not provider.ended_at, "the provider's stream was cut, not run to its end"
