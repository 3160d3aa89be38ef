"""CPU an idle `privtrail up` costs: broker, worker, store/API and the launcher, with no traffic.

    .venv/bin/python bench/idle_cpu.py                 # sample for 60 s
    .venv/bin/python bench/idle_cpu.py --seconds 120

Starts `privtrail up` (no demo) on a temporary data dir and free ports, waits until its query
API answers and the stack has settled, then reads utime+stime from /proc/<pid>/stat of every
process in its tree, the broker's JVM included, at the start and the end of the window. Prints
the total as a percentage of one core and each process's share. Linux only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from privtrail.brokers.apache_kafka import free_port
from privtrail.client import ApiClient, ApiError

READY_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The stack did not come up, or died while being measured."""


@dataclass(frozen=True)
class Sample:
    """One process's cumulative CPU time, in seconds."""

    pid: int
    label: str
    cpu_seconds: float


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="privtrail-idle-"))
    try:
        _run(args, root)
    except BenchError as error:
        print(f"idle benchmark failed: {error} (logs kept in {root})", file=sys.stderr)
        return 1
    if args.keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the sample window")
    parser.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="seconds to wait after the API answers, so start-up work is not counted",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    return parser


def _run(args: argparse.Namespace, root: Path) -> None:
    api_port = free_port()
    env = {
        **os.environ,
        "PRIVTRAIL_DATA_DIR": str(root),
        "PRIVTRAIL_EMBEDDED_KAFKA_PORT": str(free_port()),
        "PRIVTRAIL_API_PORT": str(api_port),
    }
    with (root / "up.out").open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "privtrail", "up"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_up(up, ApiClient(f"http://127.0.0.1:{api_port}"), root)
        print(_read(root / "up.out").strip())
        time.sleep(args.settle)
        before = _samples(up.pid)
        time.sleep(args.seconds)
        after = _samples(up.pid)
        if up.poll() is not None:
            raise BenchError(f"privtrail up exited with code {up.returncode} while sampled")
    finally:
        _stop(up)
    _report(before, after, args.seconds)


def _wait_until_up(up: subprocess.Popen[bytes], api: ApiClient, root: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if up.poll() is not None:
            raise BenchError(
                f"privtrail up exited with code {up.returncode}:\n{_read(root / 'up.out')}"
            )
        try:
            api.health()
            return
        except ApiError:
            if time.monotonic() > deadline:
                raise BenchError(f"the API did not answer within {READY_TIMEOUT:.0f}s") from None
        time.sleep(0.5)


def _stop(up: subprocess.Popen[bytes]) -> None:
    # SIGTERM makes `privtrail up` stop its stack in order; SIGKILL the group if it hangs.
    if up.poll() is None:
        up.send_signal(signal.SIGTERM)
    try:
        up.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()


def _samples(root_pid: int) -> dict[int, Sample]:
    """CPU time of `root_pid` and all its descendants, keyed by pid."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(entry / "stat")
            if stat is not None:
                parents[int(entry.name)], times[int(entry.name)] = stat
    tree = {root_pid}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return {pid: Sample(pid, _label(pid), times[pid]) for pid in tree if pid in times}


def _stat(path: Path) -> tuple[int, float] | None:
    """(parent pid, utime + stime in seconds) from a /proc/<pid>/stat, or None once it is gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields after its last ")" don't.
    fields = text[text.rindex(")") + 2 :].split()
    ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
    return ppid, (utime + stime) / CLOCK_TICKS


def _label(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [word.decode(errors="replace") for word in argv if word]
    if "privtrail" in words:
        return "privtrail " + " ".join(words[words.index("privtrail") + 1 :])
    main_class = next((word for word in words if word.startswith("kafka.")), None)
    if main_class is not None:
        return f"java {main_class}"
    return " ".join(words)[:60]


def _report(before: dict[int, Sample], after: dict[int, Sample], seconds: float) -> None:
    # A process that started or ended inside the window is counted from what it was seen using.
    rows = []
    for pid, end in after.items():
        start = before[pid].cpu_seconds if pid in before else 0.0
        rows.append((end.label, pid, 100 * (end.cpu_seconds - start) / seconds))
    total = sum(share for _, _, share in rows)
    print(f"idle CPU over {seconds:.0f} s: {total:.1f}% of one core")
    for label, pid, share in sorted(rows, key=lambda row: -row[2]):
        print(f"  {share:5.1f}%  {label} (pid {pid})")


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


if __name__ == "__main__":
    sys.exit(main())
