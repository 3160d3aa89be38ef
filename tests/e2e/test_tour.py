"""The README's tour, verbatim, against a demo stack; then a second demo on the same data dir.

Each command of the tour block runs as written, from a directory laid out like a checkout
(`.venv` and `policies/` linked to this one), and must answer with data. The only change is to
`up`, which gets `--events` so the demo stays small, and is stopped once the tour is done.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from privtrail.client import ApiClient, ApiError
from privtrail.demo import DEFAULT_MALFORMED_SHARE, TOUR_SUBJECT
from privtrail.demo.xpertaize import XA_EMPLOYERS
from tests.support import free_port, zero_config_client

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
EVENTS = 2200
STORED = EVENTS - round(EVENTS * DEFAULT_MALFORMED_SHARE)
READY_SECONDS = 150
COMMAND_SECONDS = 60
# The store has settled when its counts stay the same this many polls, half a second apart.
QUIET_POLLS = 6
# How each tour command shows it answered with data, keyed by the start of the command.
Check = Callable[[str, Path], bool]
CHECKS: dict[str, Check] = {
    ".venv/bin/privtrail violations --org xpertaize --rule XA-EMP-001": (
        lambda out, _: "XA-EMP-001" in out
    ),
    ".venv/bin/privtrail violations --since 2h --json": lambda out, _: bool(json.loads(out)),
    f".venv/bin/privtrail lineage {TOUR_SUBJECT} --org xpertaize": (
        lambda out, _: any(employer.id in out for employer in XA_EMPLOYERS)
    ),
    ".venv/bin/privtrail rejected": lambda out, _: "data.data_categories" in out,
    ".venv/bin/privtrail policy check policies/": lambda out, _: "policies OK" in out,
    "cp -r policies/ my-draft-policies/": (
        lambda _, cwd: any((cwd / "my-draft-policies").glob("*.yaml"))
    ),
    ".venv/bin/privtrail replay --policy my-draft-policies/ --since 1d": (
        lambda out, _: re.search(r"Replayed [1-9]\d* stored events", out) is not None
    ),
    "echo ": lambda out, _: "sent to" in out,
}


def tour_commands() -> list[str]:
    """The command lines of the README's tour block (comment lines are for people)."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"^## A tour\n\n```sh\n(.*?)^```", readme, re.S | re.M)
    assert block, "README.md has no ```sh block under '## A tour'"
    return [line for line in block[1].splitlines() if line and not line.startswith("#")]


def test_the_readme_tour_answers_with_data_and_a_second_demo_is_detected_again(
    tmp_path: Path,
) -> None:
    up_line, *commands = tour_commands()
    assert up_line.startswith(".venv/bin/privtrail up --demo ") and "&" in up_line
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    for name in (".venv", "policies"):
        (cwd / name).symlink_to(REPO / name)
    env = {
        **os.environ,
        "PRIVTRAIL_DATA_DIR": str(tmp_path / "data"),
        "PRIVTRAIL_EMBEDDED_KAFKA_PORT": str(free_port()),
        "PRIVTRAIL_API_PORT": str(free_port()),
        "COLUMNS": "200",
    }
    api = partial(
        zero_config_client, f"http://127.0.0.1:{env['PRIVTRAIL_API_PORT']}", tmp_path / "data"
    )
    up_argv = [*shlex.split(up_line.split("&")[0]), "--events", str(EVENTS)]

    with DemoRun(up_argv, cwd, env, tmp_path / "up-1.out") as first:
        first.wait_until_stored(api, STORED)
        for command in commands:
            check = next((c for start, c in CHECKS.items() if command.startswith(start)), None)
            assert check, f"no check for the tour command {command!r}: add one to CHECKS"
            out = run_line(command, cwd, env)
            assert check(out, cwd), f"{command!r} answered without data:\n{out}"
    summary = first.summary()
    suggested = re.findall(r"^ {2}(\S+ lineage \S+ --org \S+)", summary, re.M)
    assert len(suggested) == 3, summary
    assert gained_violations(summary) > 0

    # The same stories about new subjects are detected again; the summary's commands answer.
    with DemoRun(up_argv, cwd, env, tmp_path / "up-2.out") as second:
        second.wait_until_stored(api, 2 * STORED + 1)  # and the event the tour emitted
        for command in suggested:
            assert run_line(command, cwd, env).strip(), f"{command!r} printed nothing"
    assert gained_violations(second.summary()) > 0


class DemoRun:
    """`privtrail up --demo` in the background; leaving the block stops it as Ctrl-C would."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], out: Path) -> None:
        self.argv, self.cwd, self.env, self.out = argv, cwd, env, out

    def __enter__(self) -> DemoRun:
        with self.out.open("wb") as sink:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    def wait_until_stored(self, api: Callable[[], ApiClient], events: int) -> None:
        """Return once the store holds `events` events and its counts have stopped moving."""
        deadline = time.monotonic() + READY_SECONDS
        seen: list[tuple[int, int]] = []
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"privtrail up exited:\n{self.out.read_text()}"
            try:
                with api() as client:
                    stats = client.stats()
                seen.append((stats.events, stats.violations))
            except ApiError:
                pass
            quiet = len(seen) >= QUIET_POLLS and len(set(seen[-QUIET_POLLS:])) == 1
            if quiet and seen[-1][0] >= events:
                return
            time.sleep(0.5)
        pytest.fail(f"the store did not reach {events} events: {seen[-1:]}\n{self.out.read_text()}")

    def summary(self) -> str:
        printed = self.out.read_text()
        assert self.process.returncode == 0, printed
        return printed[printed.index("privtrail ran for") :]


def run_line(command: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


def gained_violations(summary: str) -> int:
    found = re.search(r"violations stored: (\d+)", summary)
    assert found, summary
    return int(found[1])
