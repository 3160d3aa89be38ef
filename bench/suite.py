"""Every throughput goal in one run: each bench script in turn, then one goals table.

    make bench                          # the full sizes (see bench/README.md, "Goals")
    make bench ARGS=--quick             # small sizes: a smoke check, not figures to compare
    make bench ARGS="--quick --jobs 8"  # the same, every step at once
    .venv/bin/python bench/suite.py --steps burst,steady --out /tmp/bench.txt

Each step runs one script of bench/ as its own process, with its own embedded Kafka broker (or
none) and its same-run yardstick, and writes its figures with `--json`. Their output goes to the
terminal and to a raw output file (`--out`, by default .privtrail/bench/suite-<time>.txt), the
figures beside it (suite-<time>/<step>.json). The table at the end says, for every goal, its
target, the figure measured with its yardstick and ratio, and whether it is met. A step that
fails leaves its goals "failed" and the others run on; the suite then exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO

from goals import Goal, goals

BENCH = Path(__file__).resolve().parent
STORE_SIZES = (1_000_000, 10_000_000)
QUICK_STORE_SIZES = (20_000, 40_000)
# Quick mode's worker settings: small batches and frequent commits, so that even a small
# backlog takes several commits and its rate can be measured between the first and the last.
QUICK_ENV = {"PRIVTRAIL_BATCH_SIZE": "1000", "PRIVTRAIL_COMMIT_INTERVAL": "0.5"}


@dataclass(frozen=True)
class Step:
    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]


def _sizes(sizes: Sequence[int]) -> str:
    return ",".join(map(str, sizes))


STEPS = (
    Step("burst", "throughput.py", ("--events", "100000"), ("--events", "2000")),
    Step(
        "steady",
        "throughput.py",
        ("--mode", "steady", "--rate", "5000", "--seconds", "60"),
        ("--mode", "steady", "--rate", "500", "--seconds", "4"),
    ),
    Step("backlog", "backlog.py", ("--events", "100000"), ("--events", "8000")),
    Step("profile", "profile_worker.py", ("--events", "40000"), ("--events", "8000")),
    Step("emitter", "emitter.py", ("--events", "30000"), ("--events", "2000", "--rounds", "1")),
    # One round's ratio moves by 10% or more, the size of the goal: the median of 12 rounds,
    # each round's two trees side by side so that a change of load hits both (about 2 minutes
    # on 2 quiet cores).
    Step(
        "judge",
        "judge.py",
        ("--events", "50000", "--rounds", "12", "--together"),
        ("--events", "2000", "--rounds", "1", "--together"),
    ),
    Step(
        "store",
        "store.py",
        # Past 1M, Store writes of 100k-event batches: the ingest loop alone takes 20-45 min
        # to reach 10M. The ingest figure at each size is the loop's own.
        (
            *("--sizes", _sizes(STORE_SIZES), "--quick-fill", "100000"),
            *("--poll-rows", "100000", "--runs", "100", "--fill-seconds", "3000"),
        ),
        (
            *("--sizes", _sizes(QUICK_STORE_SIZES), "--quick-fill", "10000"),
            *("--poll-rows", "5000", "--runs", "10"),
        ),
    ),
    Step("recovery", "recovery.py", ("--subjects", "1000000"), ("--subjects", "5000")),
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or Path(".privtrail", "bench", f"suite-{stamp}.txt")
    figures_dir = out.with_suffix("")
    figures_dir.mkdir(parents=True, exist_ok=True)
    chosen = [step for step in STEPS if step.name in args.steps]
    started = time.monotonic()
    with out.open("w", encoding="utf-8") as raw:
        tee = _teeing(raw, prefixed=args.jobs > 1)

        def run(step: Step) -> bool:
            return _run_step(step, args.quick, figures_dir, tee)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            try:
                results = list(pool.map(run, chosen))
            except KeyboardInterrupt:
                _stop_steps()
                raise
        failed = [s.name for s, ok in zip(chosen, results, strict=True) if not ok]
        minutes = (time.monotonic() - started) / 60
        tee("", _table(args.quick, figures_dir, [s.name for s in chosen], minutes))
    print(f"raw output: {out}; figures: {figures_dir}/", file=sys.stderr)
    if failed:
        print(f"failed steps: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    parser.add_argument(
        "--steps",
        type=_steps,
        default=[step.name for step in STEPS],
        help=f"comma-separated steps to run (default all: {','.join(s.name for s in STEPS)})",
    )
    parser.add_argument("--out", type=Path, help="the raw output file")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="steps run at once, with --quick only (steps side by side slow each other down)",
    )
    return parser


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.jobs > 1 and not args.quick:
        parser.error("--jobs above 1 needs --quick: full-size figures need the machine alone")
    return args


def _steps(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - {step.name for step in STEPS})
    if unknown:
        known = ", ".join(step.name for step in STEPS)
        raise argparse.ArgumentTypeError(f"unknown steps {', '.join(unknown)}; known: {known}")
    return names


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwinds like Ctrl-C, so the running step is stopped too.
    raise KeyboardInterrupt


Tee = Callable[[str, str], None]
# The steps' processes while they run, stopped if the suite is interrupted.
_RUNNING: set[subprocess.Popen[str]] = set()


def _run_step(step: Step, quick: bool, figures_dir: Path, tee: Tee) -> bool:
    """Run one step's script, its output to the terminal and the raw file; whether it
    succeeded."""
    argv = [sys.executable, str(BENCH / step.script), *(step.quick if quick else step.full)]
    figures = figures_dir / f"{step.name}.json"
    # An earlier run's figures in the same place must not stand in for a failed step's.
    figures.unlink(missing_ok=True)
    argv += ["--json", str(figures)]
    tee(step.name, f"\n=== {step.name}: {' '.join(argv[1:])}  ({_now()})")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if quick:
        env.update(QUICK_ENV)
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    _RUNNING.add(child)
    try:
        assert child.stdout is not None
        for line in child.stdout:
            tee(step.name, line.rstrip("\n"))
        code = child.wait()
    finally:
        _RUNNING.discard(child)
        if child.poll() is None:
            child.terminate()
            child.wait()
    outcome = "done" if code == 0 else f"failed (exit {code})"
    tee(step.name, f"=== {step.name}: {outcome} ({_now()})")
    return code == 0


def _stop_steps() -> None:
    for child in list(_RUNNING):
        child.terminate()


def _table(quick: bool, figures_dir: Path, ran: list[str], minutes: float) -> str:
    """The goals table, in Markdown."""
    rows = [_row(goal, figures_dir, ran) for goal in goals(_store_sizes(quick))]
    header = ("goal", "target", "measured (yardstick, ratio)", "status")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "",
        f"Goals ({'--quick: small sizes, not comparable to the targets' if quick else 'full sizes'}"
        f"; {minutes:.0f} min; {os.cpu_count()} cores; load average "
        f"{' / '.join(f'{n:.1f}' for n in os.getloadavg())}):",
        "",
        _line(header, widths),
        "| " + " | ".join("-" * width for width in widths) + " |",
        *(_line(row, widths) for row in rows),
    ]
    return "\n".join(lines)


def _store_sizes(quick: bool) -> tuple[int, ...]:
    return QUICK_STORE_SIZES if quick else STORE_SIZES


def _row(goal: Goal, figures_dir: Path, ran: list[str]) -> tuple[str, str, str, str]:
    if goal.step not in ran:
        return goal.name, goal.target, "", "not run"
    path = figures_dir / f"{goal.step}.json"
    if not path.exists():
        return goal.name, goal.target, f"step {goal.step} failed: see the raw output", "failed"
    try:
        measured, met = goal.read(json.loads(path.read_text(encoding="utf-8")))
    except (KeyError, TypeError, ZeroDivisionError) as error:
        return goal.name, goal.target, f"no figure in {path.name}: {error!r}", "failed"
    status = "no target" if met is None else "met" if met else "not met"
    return goal.name, goal.target, measured, status


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def _teeing(raw: IO[str], prefixed: bool) -> Tee:
    """Print a step's line and write it to `raw`; steps run at once get their name before
    each line, so the raw file can be read one step at a time."""
    lock = threading.Lock()

    def tee(step: str, text: str) -> None:
        # A step's header line starts with a blank line, which the prefix goes after.
        blank, text = ("\n", text[1:]) if text.startswith("\n") else ("", text)
        line = blank + (f"[{step}] {text}" if prefixed and step else text)
        with lock:
            print(line, flush=True)
            raw.write(line + "\n")
            raw.flush()

    return tee


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S UTC")


if __name__ == "__main__":
    sys.exit(main())
