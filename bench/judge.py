"""The judge alone, in-process: events/s through `Judge.judge_batch` and what state costs.

No broker, no Faust, no store: the demo's messages are judged in worker-sized batches against
an in-memory table, and after every batch each touched subject's changelog records are encoded
as the worker's `_persist` does (streams/changelog.py), into a dict standing for the compacted
changelog topic. The yardstick, measured in the same run on the same messages, is parsing them
alone (`parse_event`); the ratio is the figure to track. Times are the process's CPU time, so
other work on a shared machine slows both less unevenly than wall time would. Encoding the
outputs (violations and audit batches, as the worker's `_publish`) is timed apart and left out
of the ratio.

    .venv/bin/python bench/judge.py --events 50000
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from config.settings import REPO_POLICIES
from events.fitting import audit_messages, fit_record
from events.taxonomy import Taxonomy
from events.validation import parse_event
from privtrail.demo import default_start, demo_events
from streams.changelog import is_kept_key, subject_records
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge, Verdicts
from streams.rules import PolicySet
from streams.rules.policy import load_policy_set

SEED = 7
PSEUDONYM_KEY = b"bench"
MESSAGE_LIMIT = 1_000_000
AUDIT_RECORDS_PER_MESSAGE = 500


@dataclass
class Run:
    """One pass of the judge over the messages, from an empty table."""

    seconds: float = 0.0
    outputs_seconds: float = 0.0
    written: int = 0
    violations: int = 0
    rss_growth: int = 0
    table: dict[str, SubjectHistory] = field(default_factory=dict)
    # Key -> value size: the compacted changelog topic, without holding its bytes.
    changelog: dict[str, int] = field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="the best of each is reported")
    args = parser.parse_args()
    policy = load_policy_set(REPO_POLICIES)
    messages = [
        Incoming("privacy.events", 0, offset, e.key, e.value)
        for offset, e in enumerate(
            demo_events(SEED, args.events, default_start(), malformed_share=0)
        )
    ]
    parse_rates, runs = [], []
    for _ in range(args.rounds):
        # Alternated, so a busy spell on the shared machine hits both alike.
        parse_rates.append(_parse_rate(messages, policy.taxonomies))
        runs.append(_judge(policy, messages, args.batch_size))
        gc.collect()
    _report(len(messages), args.batch_size, max(parse_rates), runs)


def _judge(policy: PolicySet, messages: Sequence[Incoming], batch_size: int) -> Run:
    judge, run = Judge(policy, PSEUDONYM_KEY), Run()
    rss_before = _rss_bytes()
    started = time.process_time()
    for first in range(0, len(messages), batch_size):
        verdicts = judge.judge_batch(messages[first : first + batch_size], run.table.get)
        run.violations += len(verdicts.violations)
        run.written += _persist(judge, verdicts, run.table, run.changelog)
        outputs_started = time.process_time()
        _encode_outputs(verdicts)
        run.outputs_seconds += time.process_time() - outputs_started
    run.seconds = time.process_time() - started - run.outputs_seconds
    gc.collect()
    run.rss_growth = _rss_bytes() - rss_before
    return run


def _report(events: int, batch_size: int, parse_rate: float, runs: list[Run]) -> None:
    best, first = min(runs, key=lambda run: run.seconds), runs[0]
    judge_rate = events / best.seconds
    subjects = max(1, len(first.table))
    values = sum(size for name, size in first.changelog.items() if not is_kept_key(name))
    compacted = sum(len(name) + size for name, size in first.changelog.items())
    kept = sum(len(h.window) for h in first.table.values()) / subjects
    rows = [
        ("workload", f"{events} demo events, {subjects} subjects, batches of {batch_size}"),
        (f"parse only (yardstick), best of {len(runs)}", f"{parse_rate:,.0f} events/s"),
        (
            f"judge_batch + changelog encoding, best of {len(runs)}",
            f"{judge_rate:,.0f} events/s ({best.violations} violations)",
        ),
        ("judge / parse", f"{judge_rate / parse_rate:.3f}"),
        (
            "outputs encoded (not in the ratio)",
            f"{best.outputs_seconds / events * 1e6:,.1f} us per event",
        ),
        ("changelog written", f"{first.written / events:,.0f} B per event"),
        ("events kept per subject", f"{kept:.1f}"),
        ("changelog value per subject", f"{values / subjects:,.0f} B"),
        ("changelog per subject, compacted", f"{compacted / subjects:,.0f} B"),
        # The first round's: the peak only grows while a table fills.
        ("RSS growth per subject", f"{first.rss_growth / subjects:,.0f} B"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _persist(
    judge: Judge, verdicts: Verdicts, table: dict[str, SubjectHistory], log: dict[str, int]
) -> int:
    """Keep the batch's histories and write their changelog records; returns the bytes sent
    (keys and values, a tombstone its key)."""
    written = 0
    for key, (partition, history) in verdicts.histories.items():
        table[key] = history
        records = subject_records(
            key, partition, history, judge.next_due(key), judge.policy.version
        )
        for name, value in records:
            written += len(name) + (len(value) if value is not None else 0)
            if value is None:
                log.pop(name, None)
            else:
                log[name] = len(value)
    return written


def _encode_outputs(verdicts: Verdicts) -> None:
    for violation in verdicts.violations:
        fit_record(violation, MESSAGE_LIMIT)
    for _ in audit_messages(verdicts.audit, MESSAGE_LIMIT, AUDIT_RECORDS_PER_MESSAGE):
        pass


def _parse_rate(messages: Sequence[Incoming], taxonomies: Mapping[str, Taxonomy]) -> float:
    started = time.process_time()
    now = datetime.now(UTC)
    for message in messages:
        parse_event(message.value, taxonomies, now)
    return len(messages) / (time.process_time() - started)


def _rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux: the peak, which only grows while the table fills.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
