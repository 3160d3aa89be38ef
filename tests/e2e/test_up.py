"""`privtrail up --demo` as a user runs it, with the other commands asking it questions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from privtrail.client import ApiClient, ApiError
from tests.contract import clause_rule_ids
from tests.support import free_port, zero_config_client

pytestmark = pytest.mark.e2e
DURATION = 60
T = TypeVar("T")


def privtrail(*args: str, env: dict[str, str], stdin: bytes | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "privtrail", *args],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_up_demo_shows_every_rule_and_answers_the_other_commands(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PRIVTRAIL_DATA_DIR": str(tmp_path),
        "PRIVTRAIL_EMBEDDED_KAFKA_PORT": str(free_port()),
        "PRIVTRAIL_API_PORT": str(free_port()),
        "COLUMNS": "200",
    }
    url = f"http://127.0.0.1:{env['PRIVTRAIL_API_PORT']}"
    with (tmp_path / "up.out").open("wb") as out:
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "privtrail",
                "up",
                "--demo",
                "--duration",
                str(DURATION),
                "--events",
                "2500",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            _wait_for_stored(url, tmp_path, 2400, up)
            event = {
                "specversion": "1.0",
                "id": "cli-1",
                "source": "/connectx/ads",
                "type": "privacy.data.accessed",
                "time": "2026-01-05T10:00:00Z",
                "data": {
                    "org": "connectx",
                    "subject": {"id": "cli-subject", "kind": "customer"},
                    "actor": {"kind": "service", "id": "ads"},
                    "data_categories": ["user.content.private.whatsapp_message"],
                    "data_use": "marketing.advertising.first_party.targeted",
                    "legal_basis": "consent",
                },
            }
            privtrail("emit", "-", env=env, stdin=json.dumps(event).encode())
            lineage: dict[str, Any] = _eventually(
                lambda: json.loads(
                    privtrail("lineage", "cli-subject", "--org", "connectx", "--json", env=env)
                ),
                lambda answer: bool(answer["edges"]),
            )
            found = json.loads(privtrail("violations", "--org", "connectx", "--json", env=env))
            assert up.wait(DURATION + 60) == 0
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
    printed = (tmp_path / "up.out").read_text()
    assert "2500/2500" in printed, "the demo progress must count each event once"
    summary = printed[printed.index("privtrail ran for") :]
    assert "demo events sent: 2500" in summary
    assert "violations stored: " in summary
    assert "rejected inputs stored: " in summary
    assert set(clause_rule_ids()) <= {line.split()[0] for line in printed.splitlines() if line}
    assert "cli-subject" not in printed
    assert [e["data_category"] for e in lineage["edges"]] == [
        "user.content.private.whatsapp_message"
    ]
    mine = [v for v in found if v["event_id"] == "cli-1"]
    assert {v["rule_id"] for v in mine} >= {"CX-WA-ADS-001"}
    with pytest.raises(ApiError):
        ApiClient(url).health()  # everything it started has stopped


def _wait_for_stored(url: str, data_dir: Path, count: int, up: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DURATION
    while time.monotonic() < deadline:
        assert up.poll() is None, "privtrail up exited early"
        try:
            with zero_config_client(url, data_dir) as api:
                if api.stats().events >= count:
                    return
        except ApiError:
            pass
        time.sleep(0.5)
    pytest.fail(f"fewer than {count} demo events stored within {DURATION}s")


def _eventually(ask: Callable[[], T], done: Callable[[T], bool]) -> T:
    for _ in range(60):
        answer = ask()
        if done(answer):
            return answer
        time.sleep(0.5)
    pytest.fail("no answer in time")
