"""The store ingest's two big stages, in sequence as the loop runs them, and overlapped.

    .venv/bin/python bench/ingest_overlap.py --rounds 5

Each round decodes `--batches` AuditBatch polls of `--batch-size` records to columns (as the
ingest loop does) and writes each with `Store.write_audit_columns` (id look-up, insert and
views), first one after the other, then with a second thread writing each batch while the next
is decoded (a queue of one). The messages are made before the clock starts. The yardstick is
the sequential run of the same round; the ratio says what a writer thread beside the poll loop
could gain on this machine.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Callable

import pyarrow as pa
from store_history import RECORDS_PER_MESSAGE, Events

from sinks.clickhouse.audit_columns import audit_columns_of
from sinks.clickhouse.store import Store

Poll = list[bytes]


class Polls:
    """AuditBatch messages of the bench's history, a poll of `size` records at a time."""

    def __init__(self, events: Events, size: int) -> None:
        self.events = events
        self.size = size
        self.next = 0

    def take(self, count: int) -> list[Poll]:
        polls = [self._poll(self.next + i * self.size) for i in range(count)]
        self.next += count * self.size
        return polls

    def _poll(self, start: int) -> Poll:
        return [
            m.value
            for s in range(start, start + self.size, RECORDS_PER_MESSAGE)
            for m in self.events.messages(s, RECORDS_PER_MESSAGE)
            if m.topic == "privacy.audit" and m.value is not None
        ]


def decode(poll: Poll) -> list[pa.Table]:
    return [table for table in audit_columns_of(poll) if table is not None]


def in_sequence(store: Store, polls: list[Poll]) -> None:
    for poll in polls:
        store.write_audit_columns(decode(poll))


def overlapped(store: Store, polls: list[Poll]) -> None:
    handed: queue.Queue[list[pa.Table] | None] = queue.Queue(maxsize=1)

    def write() -> None:
        while (batch := handed.get()) is not None:
            store.write_audit_columns(batch)

    writer = threading.Thread(target=write, name="writer")
    writer.start()
    try:
        for poll in polls:
            handed.put(decode(poll))
    finally:
        handed.put(None)
        writer.join()


def rate(
    run: Callable[[Store, list[Poll]], None], store: Store, polls: list[Poll], size: int
) -> float:
    rows = len(polls) * size
    began = time.perf_counter()
    run(store, polls)
    return rows / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=6, help="polls per run")
    parser.add_argument("--batch-size", type=int, default=100_000, help="records per poll")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="privtrail-bench-overlap-") as directory:
        store = Store.open(f"chdb://{directory}")
        try:
            polls = Polls(Events(subjects=args.batch_size), args.batch_size)
            in_sequence(store, polls.take(1))  # warm-up
            ratios = []
            for number in range(1, args.rounds + 1):
                sequential = rate(in_sequence, store, polls.take(args.batches), args.batch_size)
                both = rate(overlapped, store, polls.take(args.batches), args.batch_size)
                ratios.append(both / sequential)
                print(
                    f"round {number}: in sequence {sequential:,.0f} rows/s (yardstick), "
                    f"overlapped {both:,.0f} rows/s, ratio {both / sequential:.2f}",
                    flush=True,
                )
            print(f"median ratio {statistics.median(ratios):.2f} over {args.rounds} rounds")
        finally:
            store.close()


if __name__ == "__main__":
    main()
