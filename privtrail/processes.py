"""Child processes that log to a file, live in their own session, and die with their parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr appended to `log_path`.

    Its own session keeps a terminal's Ctrl-C away from it, so the parent stops its children in
    order; on Linux it is also sent SIGTERM when the thread that started it dies, so a launcher
    killed without the chance to clean up leaves no process holding ports or data dirs.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_TERMINATE_WITH_PARENT,
        )


def stop_process_group(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM the group led by `process`, SIGKILL it if it outlives `timeout`; the exit code."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        return process.wait()


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _parent_death_hook() -> Callable[[], None] | None:
    if sys.platform != "linux":
        return None
    # Resolved now, before any fork: the child between fork and exec must not load libraries.
    prctl = ctypes.CDLL(None).prctl

    def terminate_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return terminate_with_parent


_TERMINATE_WITH_PARENT = _parent_death_hook()
