"""The bot runs on uvloop where it is installed, on asyncio's loop when told to."""

from __future__ import annotations

import asyncio

import pytest

from bot.__main__ import main
from bot.errors import ConfigError
from bot.event_loop import LOOP_ENV, choose_loop, loop_from, loop_name, run
from tests.e2e import bot_texts, until
from tests.factories import API_KEY, TOKEN
from tests.processes import GRACE, bot_process, log_path, terminated, write_config


@pytest.mark.parametrize(
    ("setting", "installed", "chosen"),
    [
        (None, True, "uvloop"),
        ("", True, "uvloop"),
        ("auto", True, "uvloop"),
        ("auto", False, "asyncio"),
        (None, False, "asyncio"),
        ("uvloop", True, "uvloop"),
        (" UVLoop ", True, "uvloop"),
        ("asyncio", True, "asyncio"),
        ("asyncio", False, "asyncio"),
    ],
)
def test_the_loop_is_uvloop_unless_switched_off_or_missing(setting, installed, chosen):
    assert choose_loop(setting, uvloop_installed=installed) == chosen


def test_asking_for_uvloop_where_it_is_missing_is_a_config_error():
    with pytest.raises(ConfigError, match="uvloop is not installed") as caught:
        choose_loop("uvloop", uvloop_installed=False)
    assert caught.value.path == LOOP_ENV


def test_an_unknown_loop_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="auto, uvloop, asyncio") as caught:
        choose_loop("trio", uvloop_installed=True)
    assert caught.value.path == LOOP_ENV


def test_uvloop_is_installed_here_so_the_default_is_uvloop():
    assert loop_from({}) == "uvloop"
    assert loop_from({LOOP_ENV: "asyncio"}) == "asyncio"


async def _running_loop() -> str:
    await asyncio.sleep(0)
    return loop_name(asyncio.get_running_loop())


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_run_runs_the_coroutine_on_the_loop_named(loop):
    assert run(_running_loop(), loop) == loop


def test_check_config_refuses_an_unknown_loop(
    tmp_path, telegram, provider, config, monkeypatch, capsys
):
    config_file = write_config(tmp_path / "config.yaml", telegram, provider, config.database.url)
    monkeypatch.setenv("TEST_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_API_KEY", API_KEY)
    monkeypatch.setenv(LOOP_ENV, "trio")
    assert main(["check-config", "--config", str(config_file)]) == 2
    assert f"config error: {LOOP_ENV}:" in capsys.readouterr().err


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_the_bot_process_says_its_loop_answers_and_stops_on_sigterm(
    telegram, provider, config, tmp_path, loop
):
    setting = {"uvloop": "auto", "asyncio": "asyncio"}[loop]
    async with bot_process(
        tmp_path, telegram, provider, config, environ={LOOP_ENV: setting}
    ) as process:
        provider.enqueue_stream(["Hello ", "from ", loop, "."])
        telegram.user_sends("Which loop?")
        await until(lambda: bot_texts(telegram) == [f"Hello from {loop}."])
        assert await terminated(process, GRACE) == 0
    log = log_path(tmp_path).read_text()
    assert f"running on the {loop} event loop" in log
    assert "stopping" in log
