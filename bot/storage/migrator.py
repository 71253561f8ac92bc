"""Schema migrations in a child process, so that the running bot never imports alembic.

Alembic, mako and one migration run would stay in the long-running process's memory for
good (about 10 MB of its peak); a child process gives it all back when it exits. The URL
travels on the child's stdin, never on its command line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from bot.storage.db import migrate

logger = logging.getLogger(__name__)

# The directory holding the ``bot`` package: a source checkout that is not installed works too.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class MigrationError(Exception):
    """The child process could not bring the database to the newest revision."""


async def migrate_apart(url: str) -> None:
    """Upgrade the database at ``url`` to the newest migration, in a child process.

    What the child logs is logged here; a failure raises ``MigrationError`` with its reason.
    """
    path = os.environ.get("PYTHONPATH")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(_PACKAGE_ROOT), *([path] if path else [])]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, output = await process.communicate(url.encode())
    lines = output.decode(errors="replace").splitlines()
    if process.returncode != 0:
        for line in lines:
            logger.error("migration: %s", line)
        reason = lines[-1] if lines else "no output"
        raise MigrationError(f"migration failed (exit status {process.returncode}): {reason}")
    for line in lines:
        logger.info("migration: %s", line)


def _main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    asyncio.run(migrate(sys.stdin.read().strip()))


if __name__ == "__main__":
    _main()
