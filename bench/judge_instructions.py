"""The judge's instructions per event, counted by valgrind's cachegrind, against an older judge.

judge.py's CPU times move by a third from one round to the next on a shared machine; the number
of instructions a process executes does not depend on the machine's load. Each tree (this
checkout, and the git revisions of `--baseline`, as in judge.py) runs judge.py's loop under
`valgrind --tool=cachegrind`, once judging the messages and once only loading them, with the
worker's garbage collector setting; the difference over the events is the judge's instructions
per event. Instructions are not time: memory and cache behaviour are left out, so this is a
companion to judge.py's ratio, not a replacement.

    .venv/bin/python bench/judge_instructions.py --events 50000 --baseline 95b43e5,a75fbcf
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from judge import BEFORE_HISTORY, REPO, extract_tree, judge_messages, load_workload

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--baseline", default=BEFORE_HISTORY, help="git revisions, by commas")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind processes at a time")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--judge", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--gc-thresholds", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child, args.batch_size, args.gc_thresholds, args.judge)
        return
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install -y valgrind)")
    from judge import worker_gc_thresholds, write_messages

    with tempfile.TemporaryDirectory(prefix="privtrail-judge-instructions-") as tmp:
        root = Path(tmp)
        messages = root / "messages.pickle"
        write_messages(messages, args.events)
        trees = {r: extract_tree(r, root / r) for r in args.baseline.split(",")}
        trees["now"] = REPO
        runs = [(name, judging) for name in trees for judging in (False, True)]
        thresholds = worker_gc_thresholds()
        with ThreadPoolExecutor(args.jobs) as pool:
            counts = dict(
                zip(
                    runs,
                    pool.map(
                        lambda run: _instructions(
                            trees[run[0]], messages, args.batch_size, thresholds, run[1]
                        ),
                        runs,
                    ),
                    strict=True,
                )
            )
    per_event = {n: (counts[n, True] - counts[n, False]) / args.events for n in trees}
    yardstick = next(iter(per_event.values()))
    print(f"workload: {args.events} demo events, batches of {args.batch_size}")
    for name, instructions in per_event.items():
        print(
            f"{name:>10}  {instructions:>10,.0f} instructions/event  {instructions / yardstick:.3f}"
        )


def _instructions(
    tree: Path, messages: Path, batch_size: int, gc_thresholds: str, judging: bool
) -> int:
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        str(messages),
        "--batch-size",
        str(batch_size),
        "--gc-thresholds",
        gc_thresholds,
        *(["--judge"] if judging else []),
    ]
    # The tree's packages first on the path, ahead of this checkout's editable install.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, check=True)
    found = _REFS.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind for {tree}:\n{done.stderr}")
    return int(found.group(1).replace(",", ""))


def _child(messages: Path, batch_size: int, gc_thresholds: str, judging: bool) -> None:
    policy, loaded = load_workload(messages, gc_thresholds)
    if judging:
        judge_messages(policy, loaded, batch_size)


if __name__ == "__main__":
    main()
