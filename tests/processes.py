"""A real bot process (``python -m bot run``) on the fakes, for tests of restarts and signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import yaml

from tests.factories import API_KEY, MODEL, TOKEN

ROOT = Path(__file__).resolve().parent.parent


def write_config(path: Path, telegram, provider, database_url: str, **sections) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "telegram": {
                    "token": "${TEST_BOT_TOKEN}",
                    "base_url": telegram.base_url,
                    "base_file_url": telegram.base_file_url,
                    "poll_timeout": 1,
                },
                "database": {"url": database_url},
                "providers": [
                    {
                        "name": "fake",
                        "kind": "openai",
                        "base_url": provider.base_url,
                        "api_key": "${TEST_API_KEY}",
                    }
                ],
                "models": {"chat": MODEL},
                **sections,
            }
        )
    )
    return path


def log_path(tmp_path: Path) -> Path:
    """Where ``bot_process`` appends the output of every bot it runs in ``tmp_path``."""
    return tmp_path / "bot.log"


@asynccontextmanager
async def bot_process(
    tmp_path: Path,
    telegram,
    provider,
    config,
    environ: Mapping[str, str] | None = None,
    **sections,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m bot run`` on the fakes and ``config``'s database, polling once this yields.

    ``environ`` adds to the process's environment; its output goes to ``log_path(tmp_path)``.
    A process still running when the block ends is killed.
    """
    config_file = write_config(
        tmp_path / "config.yaml", telegram, provider, config.database.url, **sections
    )
    with log_path(tmp_path).open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            "--config",
            str(config_file),
            cwd=ROOT,
            env={**os.environ, "TEST_BOT_TOKEN": TOKEN, "TEST_API_KEY": API_KEY, **(environ or {})},
            stdout=log,
            stderr=log,
        )
    try:
        await telegram.wait_until_polling(timeout=30)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()


# Long enough for the bot to notice the signal; short enough to wait out in a test.
GRACE = 1.0
# A stopping process that has not exited after its grace period plus this is hanging.
EXIT_MARGIN = 15.0


async def terminated(process: asyncio.subprocess.Process, grace: float) -> int:
    """SIGTERM ``process`` and return its exit code once it has stopped."""
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), grace + EXIT_MARGIN)
