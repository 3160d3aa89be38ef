"""The judge alone, in-process, against an older judge measured in the same run.

No broker, no Faust, no store: the demo's messages are judged in worker-sized batches against
an in-memory table, each touched subject encoded for the changelog after every batch, as the
worker does. Each measurement runs in a fresh process, so RSS is its own; the yardstick is the
same script's measurement of the judge at `--baseline` (a git revision, extracted under /tmp),
on the same messages, in rounds that alternate between the two trees. The ratio of the judge's
CPU time per event to the baseline's is the figure to track. Parsing alone (`parse_event`) is
also timed in each process, as a second yardstick that does not depend on the judge.

Every tree, the yardstick included, runs with the garbage collector set as this tree's worker
process sets it (`streams.worker.tune_gc`: what is loaded at start frozen, higher thresholds);
`--gc default` keeps CPython's defaults instead.

    .venv/bin/python bench/judge.py --events 50000
    .venv/bin/python bench/judge.py --events 50000 --baseline none   # this tree only
    .venv/bin/python bench/judge.py --events 50000 --together        # each round's trees at once
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from figures import add_json_option, write_figures

SEED = 7
PSEUDONYM_KEY = b"bench"
REPO = Path(__file__).resolve().parent.parent
# The commit before per-subject history (streams/history.py) landed: the judge whose cost the
# history must stay within 10% of.
BEFORE_HISTORY = "95b43e5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each tree")
    parser.add_argument(
        "--baseline",
        default=BEFORE_HISTORY,
        help="git revision whose judge is the yardstick, or several separated by commas (the "
        "first is the yardstick of the others); 'none': this tree only",
    )
    parser.add_argument(
        "--gc",
        choices=["worker", "default"],
        default="worker",
        help="the garbage collector as the worker process sets it, or CPython's defaults",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="measure a round's trees at the same time, so a change of load on a shared "
        "machine hits them alike",
    )
    add_json_option(parser)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gc-thresholds", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_measure(args.child, args.batch_size, args.gc_thresholds)))
        return
    thresholds = worker_gc_thresholds() if args.gc == "worker" else None
    with tempfile.TemporaryDirectory(prefix="privtrail-judge-bench-") as tmp:
        root = Path(tmp)
        messages = root / "messages.pickle"
        subjects = write_messages(messages, args.events)
        trees = {}
        if args.baseline != "none":
            for revision in args.baseline.split(","):
                trees[revision] = extract_tree(revision, root / revision)
        trees["now"] = REPO
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            if args.together:
                children = {
                    n: _start_child(t, messages, args.batch_size, thresholds)
                    for n, t in trees.items()
                }
                for name, child in children.items():
                    results[name].append(_child_result(child, trees[name]))
            else:
                for name, tree in trees.items():
                    child = _start_child(tree, messages, args.batch_size, thresholds)
                    results[name].append(_child_result(child, tree))
    _report(args, subjects, results)


def write_messages(path: Path, count: int) -> int:
    from privtrail.demo import default_start, demo_events

    events = list(demo_events(SEED, count, default_start(), malformed_share=0))
    with path.open("wb") as out:
        pickle.dump([(offset, e.key, e.value) for offset, e in enumerate(events)], out)
    return len({e.key for e in events})


def extract_tree(revision: str, into: Path) -> Path:
    """The tree at `revision`, by `git archive`: the repository's worktrees and index untouched."""
    into.mkdir()
    archive = into.with_suffix(".tar")
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(REPO), "archive", revision], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def worker_gc_thresholds() -> str:
    # This tree's setting, handed to every tree's process: the yardstick's tree predates it.
    from streams.worker import GC_THRESHOLDS

    return ",".join(map(str, GC_THRESHOLDS))


def _start_child(
    tree: Path, messages: Path, batch_size: int, gc_thresholds: str | None
) -> subprocess.Popen[str]:
    # The tree's packages first on the path, ahead of this checkout's editable install.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, __file__, "--child", str(messages), "--batch-size", str(batch_size)]
    if gc_thresholds is not None:
        command += ["--gc-thresholds", gc_thresholds]
    pipe = subprocess.PIPE
    return subprocess.Popen(command, env=env, cwd=tree, stdout=pipe, stderr=pipe, text=True)


def _child_result(child: subprocess.Popen[str], tree: Path) -> dict[str, Any]:
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"measuring the judge of {tree} failed:\n{err}")
    result: dict[str, Any] = json.loads(out)
    return result


def _measure(messages_path: Path, batch_size: int, gc_thresholds: str | None) -> dict[str, Any]:
    """One tree's figures; imports whichever tree is first on the path."""
    policy, messages = load_workload(messages_path, gc_thresholds)
    parse_cpu = _parse_cpu([value for _, _, value in messages], policy.taxonomies)
    rss_before = _rss_bytes()
    wall, cpu = time.perf_counter(), time.process_time()
    table, violations, changelog_bytes = judge_messages(policy, messages, batch_size)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "events": len(messages),
        "subjects": len(table),
        "violations": violations,
        "parse_us": parse_cpu / len(messages) * 1e6,
        "judge_us": cpu / len(messages) * 1e6,
        "judge_rate": len(messages) / wall,
        "changelog_per_event": changelog_bytes / len(messages),
        "value_per_subject": sum(len(v.model_dump_json()) for v in table.values()) / len(table),
        "kept_per_subject": sum(len(getattr(v, "window", ())) for v in table.values()) / len(table),
        "rss_per_subject": (_rss_bytes() - rss_before) / len(table),
    }


def load_workload(
    messages_path: Path, gc_thresholds: str | None
) -> tuple[Any, list[tuple[int, bytes, bytes]]]:
    """The policy and the messages, the garbage collector set as the worker sets it."""
    from config.settings import REPO_POLICIES
    from streams.rules.policy import load_policy_set

    policy = load_policy_set(REPO_POLICIES)
    if gc_thresholds is not None:
        # As streams.worker.tune_gc does once the worker has loaded its policy (this tree's
        # function may not exist in the yardstick's).
        gc.freeze()
        gc.set_threshold(*map(int, gc_thresholds.split(",")))
    with messages_path.open("rb") as source:
        messages: list[tuple[int, bytes, bytes]] = pickle.load(source)
    return policy, messages


def judge_messages(
    policy: Any, messages: list[tuple[int, bytes, bytes]], batch_size: int
) -> tuple[dict[str, Any], int, int]:
    """The worker's loop without Kafka: the table, the violations and changelog bytes written."""
    from streams.judging import Incoming, Judge

    judge = Judge(policy, PSEUDONYM_KEY)
    table: dict[str, Any] = {}
    violations = changelog_bytes = 0
    for first in range(0, len(messages), batch_size):
        # Made per batch, as the worker makes them of what it consumed: they are garbage after.
        batch = [
            Incoming("privacy.events", 0, offset, key, value)
            for offset, key, value in messages[first : first + batch_size]
        ]
        verdicts = judge.judge_batch(batch, table.get)
        violations += len(verdicts.violations)
        # A history per subject now, a state per subject before it.
        written = getattr(verdicts, "histories", None) or verdicts.states
        for key, (_, value) in written.items():
            table[key] = value
            changelog_bytes += len(_changelog_value(value))
    return table, violations, changelog_bytes


def _changelog_value(value: Any) -> bytes:
    # As the worker encodes it for its changelog (trees before `changelog_json` dumped the model).
    encode = getattr(value, "changelog_json", None)
    encoded: bytes = encode() if encode is not None else value.model_dump_json().encode()
    return encoded


def _parse_cpu(values: Sequence[bytes], taxonomies: Any) -> float:
    from events.validation import parse_event

    started = time.process_time()
    now = datetime.now(UTC)
    for value in values:
        parse_event(value, taxonomies, now)
    return time.process_time() - started


def _rss_bytes() -> int:
    """Resident memory now (not the peak: parsing every message first raised the peak)."""
    gc.collect()
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _report(
    args: argparse.Namespace, subjects: int, results: dict[str, list[dict[str, Any]]]
) -> None:
    def median(name: str, figure: str) -> float:
        return float(statistics.median(r[figure] for r in results[name]))

    names = list(results)
    rows: list[tuple[str, ...]] = [
        ("", *names),
        ("parse_event alone, CPU us/event", *(f"{median(n, 'parse_us'):.1f}" for n in names)),
        ("judge_batch + changelog, CPU us/event", *(f"{median(n, 'judge_us'):.1f}" for n in names)),
        ("judge_batch + changelog, events/s", *(f"{median(n, 'judge_rate'):,.0f}" for n in names)),
        ("violations", *(" ".join(str(r["violations"]) for r in results[n]) for n in names)),
        (
            "changelog written, B/event",
            *(f"{median(n, 'changelog_per_event'):,.0f}" for n in names),
        ),
        ("changelog value, B/subject", *(f"{median(n, 'value_per_subject'):,.0f}" for n in names)),
        ("events kept per subject", *(f"{median(n, 'kept_per_subject'):.1f}" for n in names)),
        ("RSS growth, B/subject", *(f"{median(n, 'rss_per_subject'):,.0f}" for n in names)),
    ]
    order = "each round's trees at the same time" if args.together else "alternating"
    print(
        f"workload: {args.events} demo events, {subjects} subjects, batches of "
        f"{args.batch_size}; {args.rounds} rounds per tree, {order}; medians; garbage "
        f"collector: {args.gc}"
    )
    if args.baseline != "none":
        print(f"trees: {', '.join(names[:-1])} (git revisions) and now ({REPO})")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = zip(row, widths, strict=True)
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells)))
    yardstick = results[names[0]]
    ratios: dict[str, float] = {}
    round_ratios: dict[str, list[float]] = {}
    middle_halves: dict[str, tuple[float, float]] = {}
    for name in names[1:]:
        rounds = [
            mine["judge_us"] / theirs["judge_us"]
            for theirs, mine in zip(yardstick, results[name], strict=True)
        ]
        ratios[name], round_ratios[name] = statistics.median(rounds), rounds
        middle_halves[name] = low, high = middle_half(rounds)
        print(
            f"{name} / {names[0]}, judge CPU per event: median of {len(rounds)} rounds "
            f"{ratios[name]:.3f}, middle half {low:.3f}-{high:.3f}, all "
            f"{min(rounds):.3f}-{max(rounds):.3f} ({', '.join(f'{r:.3f}' for r in rounds)}); "
            f"of medians {median(name, 'judge_us') / median(names[0], 'judge_us'):.3f}"
        )
    trees = {n: {f: median(n, f) for f in ("judge_us", "parse_us", "judge_rate")} for n in names}
    figures = {"yardstick": names[0], "trees": trees, "ratio": ratios}
    write_figures(args.json, {**figures, "rounds": round_ratios, "middle_half": middle_halves})


def middle_half(values: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles: where the middle half of the rounds' ratios lie."""
    if len(values) < 2:
        return values[0], values[0]
    first, _, third = statistics.quantiles(values, n=4, method="inclusive")
    return first, third


if __name__ == "__main__":
    main()
