"""config.settings defers the asyncio that pydantic-settings imports for its command-line apps
only: a query command does not pay for it, and asyncio still works for whoever uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import sys
from config.settings import Settings
assert Settings().api_port == 8123
assert "asyncio" not in sys.modules, "importing the settings imported asyncio"

import pydantic_settings.main

async def answer() -> int:
    return 42

# pydantic-settings' own use of asyncio reaches the real module, imported then.
assert pydantic_settings.main.asyncio.run(answer()) == 42
import asyncio
assert type(asyncio).__name__ == "module" and asyncio.run(answer()) == 42
assert pydantic_settings.main.asyncio.run is asyncio.run
"""


def test_the_settings_import_asyncio_only_when_it_is_used() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=REPO,
        env={"PRIVTRAIL_API_PORT": "8123", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
