"""Rebuilding the worker's state table from its changelog, in process: time and memory.

The demo's events are judged as in bench/judge.py and the compacted changelog they leave (what
`_persist` writes, streams/changelog.py) is copied under new pseudonyms up to `--subjects`
subjects. Then, as a restarted worker does:

1. fill: every record into the table as Faust's in-memory store applies a changelog batch
   (the raw bytes, keyed; tombstones were compacted away already);
2. index: every subject's next deadline read from its value's header (`_refresh_deadline_index`);
3. decode: `--decode` subjects decoded in full (their histories, kept events popped from the
   table), what a subject costs once it is judged again; given per subject, its memory traced
   on as many more.

No broker: fetching the changelog topic is not in these figures, nor Faust's per-record work
(decoding each key's JSON). RSS is the process's resident memory after each step.

    .venv/bin/python bench/recovery.py --subjects 250000
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from config.settings import REPO_POLICIES
from privtrail.demo import default_start, demo_events
from streams.changelog import decode_subject, is_kept_key, kept_key, locate, subject_records
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge
from streams.rules.policy import load_policy_set

SEED = 7
BATCH = 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="demo events judged")
    parser.add_argument("--subjects", type=int, default=250_000)
    parser.add_argument("--decode", type=int, default=10_000)
    args = parser.parse_args()
    judge, changelog = _judged(args.events)
    subjects = [key for key in changelog if not is_kept_key(key)]
    gc.collect()
    rss_start = _rss()
    table, fill = _fill(_copies(changelog, subjects, args.subjects))
    del changelog
    owned = [key for key in table if not is_kept_key(key)]
    index = _timed(lambda: _index(judge, table, owned))
    gc.collect()
    rss_filled = _rss()
    sample = owned[: args.decode]
    decode = _timed(lambda: _decode(table, sample))
    tracemalloc.start()
    _decode(table, owned[args.decode : 2 * args.decode])
    decoded_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    count = len(owned)
    rows = [
        ("subjects", f"{count:,} ({len(table) + len(sample):,} records before decoding)"),
        ("fill the table", f"{fill:,.1f} s"),
        ("index deadlines from headers", f"{index:,.1f} s"),
        ("RSS, table filled and indexed", f"{rss_filled / 2**30:,.2f} GiB"),
        ("RSS of the table per subject", f"{(rss_filled - rss_start) / count:,.0f} B"),
        ("decode a subject in full", f"{decode / max(1, len(sample)) * 1e6:,.0f} us"),
        (
            "memory per decoded subject (tracemalloc, less its bytes freed)",
            f"{decoded_bytes / max(1, len(sample)):,.0f} B",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _judged(events: int) -> tuple[Judge, dict[str, bytes]]:
    """The demo judged, and the compacted changelog it leaves."""
    policy = load_policy_set(REPO_POLICIES)
    messages = [
        Incoming("privacy.events", 0, offset, e.key, e.value)
        for offset, e in enumerate(demo_events(SEED, events, default_start(), malformed_share=0))
    ]
    judge = Judge(policy, b"bench")
    table: dict[str, SubjectHistory] = {}
    changelog: dict[str, bytes] = {}
    for first in range(0, len(messages), BATCH):
        verdicts = judge.judge_batch(messages[first : first + BATCH], table.get)
        for key, (partition, history) in verdicts.histories.items():
            table[key] = history
            due = judge.next_due(key)
            for name, value in subject_records(key, partition, history, due, policy.version):
                if value is None:
                    changelog.pop(name, None)
                else:
                    changelog[name] = value
    return judge, changelog


def _copies(
    changelog: dict[str, bytes], subjects: list[str], count: int
) -> list[tuple[str, bytes]]:
    """`count` subjects' records, cycling through the judged ones under new pseudonyms; each
    value a bytes object of its own, as records read from a topic are."""
    window_seqs: dict[str, list[str]] = {key: [] for key in subjects}
    for name in changelog:
        if is_kept_key(name):
            window_seqs[name.split("#", 1)[0]].append(name.split("#", 1)[1])
    records = []
    for copy in range(count):
        key = subjects[copy % len(subjects)]
        pseudonym = f"{key}{copy:08x}"
        for seq in window_seqs[key]:
            value = changelog[f"{key}#{seq}"]
            records.append((kept_key(pseudonym, int(seq)), bytes(bytearray(value))))
        records.append((pseudonym, bytes(bytearray(changelog[key]))))
    return records


def _fill(records: list[tuple[str, bytes]]) -> tuple[dict[str, bytes], float]:
    table: dict[str, bytes] = {}
    return table, _timed(lambda: table.update(records))


def _index(judge: Judge, table: dict[str, bytes], keys: list[str]) -> None:
    for key in keys:
        located = locate(table[key])
        judge.track_deadline(key, located.partition, located.due)


def _decode(table: dict[str, bytes], keys: list[str]) -> None:
    decoded = {key: decode_subject(key, table.pop(key), table.pop) for key in keys}
    assert len(decoded) == len(keys)
    _keep_alive.append(decoded)


# Decoded histories stay alive past the timing, so RSS counts them.
_keep_alive: list[object] = []


def _timed(step: Callable[[], None]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _rss() -> int:
    """The process's resident memory now (not its peak)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * resource.getpagesize()


if __name__ == "__main__":
    main()
