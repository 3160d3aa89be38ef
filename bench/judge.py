"""The judge alone, in-process: events/s through `Judge.judge_batch` and what state costs.

No broker, no Faust, no store: the demo's messages are judged in worker-sized batches against
an in-memory table, each touched subject encoded for the changelog after every batch, as the
worker does. The yardstick, measured in the same run on the
same messages, is parsing them alone (`parse_event`); the ratio is the figure to track.

    .venv/bin/python bench/judge.py --events 50000
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from config.settings import REPO_POLICIES
from events.taxonomy import Taxonomy
from events.validation import parse_event
from privtrail.demo import default_start, demo_events
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge
from streams.rules.policy import load_policy_set

SEED = 7
PSEUDONYM_KEY = b"bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    policy = load_policy_set(REPO_POLICIES)
    start = default_start()
    messages = [
        Incoming("privacy.events", 0, offset, e.key, e.value)
        for offset, e in enumerate(demo_events(SEED, args.events, start, malformed_share=0))
    ]

    parse_rate = _parse_rate(messages, policy.taxonomies)
    judge = Judge(policy, PSEUDONYM_KEY)
    table: dict[str, SubjectHistory] = {}
    rss_before = _rss_bytes()
    started = time.perf_counter()
    violations = 0
    changelog_bytes = 0
    for first in range(0, len(messages), args.batch_size):
        verdicts = judge.judge_batch(messages[first : first + args.batch_size], table.get)
        violations += len(verdicts.violations)
        for key, (_, history) in verdicts.histories.items():
            table[key] = history
            changelog_bytes += len(history.model_dump_json())  # as the worker's changelog
    judge_rate = len(messages) / (time.perf_counter() - started)
    gc.collect()
    rss_per_subject = (_rss_bytes() - rss_before) / max(1, len(table))
    changelog = sum(len(h.model_dump_json()) for h in table.values()) / max(1, len(table))
    kept = sum(len(h.window) for h in table.values()) / max(1, len(table))

    rows = [
        (
            "workload",
            f"{len(messages)} demo events, {len(table)} subjects, batches of {args.batch_size}",
        ),
        ("parse only (yardstick)", f"{parse_rate:,.0f} events/s"),
        (
            "judge_batch + changelog encoding",
            f"{judge_rate:,.0f} events/s ({violations} violations)",
        ),
        ("judge / parse", f"{judge_rate / parse_rate:.3f}"),
        ("changelog written", f"{changelog_bytes / len(messages):,.0f} B per event"),
        ("events kept per subject", f"{kept:.1f}"),
        ("changelog value per subject", f"{changelog:,.0f} B"),
        ("RSS growth per subject", f"{rss_per_subject:,.0f} B"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _parse_rate(messages: Sequence[Incoming], taxonomies: Mapping[str, Taxonomy]) -> float:
    started = time.perf_counter()
    now = datetime.now(UTC)
    for message in messages:
        parse_event(message.value, taxonomies, now)
    return len(messages) / (time.perf_counter() - started)


def _rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux: the peak, which only grows while the table fills.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
