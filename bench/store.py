"""The store at 1M and 10M events, filled through the store process's own ingest code.

An `Ingestor` (sinks/ingest.py) with its default settings reads scripted Kafka messages from a
stand-in consumer: AuditBatch messages of 500 records as the worker produces them
(events/fitting.py), one message per violation, and retractions of earlier violations. It
decodes, batches and writes them through `Store` into an on-disk chDB, as `privtrail serve`
does. Left out: the broker and its network fetches (the stand-in hands out ready messages).

Figures printed, each with its same-run yardstick:
- ingest rows/s, next to a raw clickhouse-connect insert of the same rows into a plain
  MergeTree table (no FINAL lookups, no views);
- p50/p99 of a subject's lineage, violations by org + rule + since, stats() and latency(),
  next to a trivial `SELECT 1` and to stats() computed the old way (every table with FINAL);
- ingest rows/s with and without a dashboard poller calling stats() and latency() each second.

With `--quick-fill N`, the sizes after the first are reached through the store's own writes in
N-event batches without making or decoding messages (store_fill.py), and the ingest loop runs
again at each size for the poller segments. Each filtered query's reads (EXPLAIN indexes = 1)
are printed beside the times (store_plans.py).

    .venv/bin/python bench/store.py --sizes 1000000,10000000
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from figures import add_json_option, write_figures
from store_history import ORGS, RECORDS_PER_MESSAGE, RULES, Events, ScriptedConsumer
from store_plans import read_summary, store_activity

from config.settings import Settings
from events.outputs import AuditBatch
from sinks.clickhouse.audit_columns import audit_columns_of
from sinks.clickhouse.counters import ensure_counters
from sinks.clickhouse.feed import FeedFilter, feed_page, violations_over_time
from sinks.clickhouse.schema import EVENTS
from sinks.clickhouse.store import Store
from sinks.clickhouse.triage import ensure_triage
from sinks.ingest import Ingestor


@dataclass
class Bench:
    store: Store
    ingestor: Ingestor
    consumer: ScriptedConsumer
    events: Events
    raw_rate: float
    raw_cpu_rate: float
    write_seconds: float = 0.0
    # The process's CPU seconds (every thread: the loop, chDB's, its background merges) while
    # filling, message making left out, and the events filled meanwhile.
    fill_cpu: float = 0.0
    # Events the store held when the bench opened it (--dir of an earlier run).
    stored_before: int = 0

    def written(self) -> int:
        return self.stored_before + self.ingestor.status().rows_written["events"]

    def fill(self, target: int) -> float:
        """Ingest events up to `target`; rows/s of the ingest loop (message making excluded)."""
        written = self.written()
        generating = self.consumer.generating
        generating_cpu = self.consumer.generating_cpu
        started, started_cpu = time.perf_counter(), time.process_time()
        with self.consumer.lock:
            self.consumer.allowed = target
        while self.written() < target:
            problem = self.ingestor.status().last_error
            if problem:
                raise SystemExit(f"ingest failed: {problem}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started - (self.consumer.generating - generating)
        made_cpu = self.consumer.generating_cpu - generating_cpu
        self.fill_cpu += time.process_time() - started_cpu - made_cpu
        return (target - written) / elapsed


def timed_writes(bench: Bench) -> None:
    """Add the time of each Store.write_audit_columns call, as the ingest loop makes it, to the
    bench."""
    original = bench.store.write_audit_columns

    def write_audit_columns(batches: Sequence[pa.Table]) -> None:
        started = time.perf_counter()
        original(batches)
        bench.write_seconds += time.perf_counter() - started

    bench.store.write_audit_columns = write_audit_columns  # type: ignore[method-assign]


@dataclass
class Yardsticks:
    raw_insert: float
    # Rows per CPU second of the process: a figure the machine's load moves less.
    raw_insert_cpu: float
    # Decoding AuditBatch messages alone, records/s: through the models, and as the ingest
    # loop does (straight to Arrow columns, a batch's messages in one call).
    decode_models: float
    decode_columns: float


def yardsticks(store: Store, events: Events, rows: int, batch: int) -> Yardsticks:
    """Rows/s of a bare insert of the same rows into a plain MergeTree table, and records/s of
    decoding their messages alone, both ways."""
    client, db = store._client, store.database
    columns = ", ".join(f"`{name}` {kind}" for name, kind in EVENTS.columns)
    client.command(f"DROP TABLE IF EXISTS {db}.raw_events")
    client.command(
        f"CREATE TABLE {db}.raw_events ({columns}) ENGINE = MergeTree "
        "ORDER BY (org, subject_pseudonym, event_id)"
    )
    # Event numbers past the bench's fill, so nothing here is a copy of a stored event.
    base = 10**8
    decoding = to_columns = inserting = inserting_cpu = 0.0
    for start in range(base, base + rows, batch):
        values = [
            m.value
            for s in range(start, start + batch, RECORDS_PER_MESSAGE)
            for m in events.messages(s, RECORDS_PER_MESSAGE)
            if m.topic == "privacy.audit"
        ]
        began = time.perf_counter()
        records = [r for v in values for r in AuditBatch.model_validate_json(v).records]
        decoding += time.perf_counter() - began
        began = time.perf_counter()
        audit_columns_of(values)
        to_columns += time.perf_counter() - began
        data = [[getattr(r, name) for r in records] for name in EVENTS.column_names]
        began, began_cpu = time.perf_counter(), time.process_time()
        client.insert(
            "raw_events", data, column_names=EVENTS.column_names, database=db, column_oriented=True
        )
        inserting += time.perf_counter() - began
        inserting_cpu += time.process_time() - began_cpu
    client.command(f"DROP TABLE {db}.raw_events")
    return Yardsticks(rows / inserting, rows / inserting_cpu, rows / decoding, rows / to_columns)


def percentiles(run: Callable[[], object], times: int) -> tuple[float, float]:
    took = []
    for _ in range(times):
        began = time.perf_counter()
        run()
        took.append((time.perf_counter() - began) * 1000)
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, int(len(took) * 0.99))]


def final_stats(store: Store) -> None:
    """stats() as it was: every table counted with FINAL (the yardstick for the counters)."""
    db = store.database
    for table in ("events", "lineage_edges", "rejected_events"):
        store._client.query(f"SELECT count() FROM {db}.{table} FINAL")
    store._client.query(
        f"SELECT org, rule_id, count() FROM {db}.violations FINAL WHERE status = 'open' "
        "GROUP BY org, rule_id"
    )


def chart(store: Store, end: datetime) -> None:
    """The dashboard's 7-day chart of open violations by hour, ending at `end`."""
    violations_over_time(store, FeedFilter(), end, timedelta(days=7), timedelta(hours=1))


def load_average() -> str:
    """The machine's load, printed beside the figures: the machine may be shared."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min)"


def measure_queries(bench: Bench, size: int, times: int) -> dict[str, dict[str, float]]:
    """Print each query's p50 and p99 in ms, and return them by the query's name."""
    store, events = bench.store, bench.events
    rng = random.Random(size)
    subjects = min(events.subjects, size)

    def subject() -> tuple[str, str]:
        return events.subject(rng.randrange(subjects))

    def lineage() -> None:
        store.lineage(*subject())

    def subject_violations() -> None:
        org, pseudonym = subject()
        store.violations(org=org, subject_pseudonym=pseudonym, limit=1000)

    since = events.time(size) - timedelta(days=7)

    def by_rule() -> None:
        org = rng.choice(ORGS)
        store.violations(org=org, rule=rng.choice(RULES[org]), since=since)

    def lineage_answer() -> None:
        # The store's part of GET /lineage (privtrail/api.py): both queries, one subject.
        org, pseudonym = subject()
        store.lineage(org, pseudonym)
        store.violations(org=org, subject_pseudonym=pseudonym, limit=1000)

    # Read first as the store is left by the writes (its merges running, its caches as the
    # writes left them); the look-ups that print what the queries read come after.
    print(f"  {load_average()}; {store_activity(store)}")
    rows: list[tuple[str, Callable[[], object], int]] = [
        ("SELECT 1 (yardstick)", store.ping, times),
        ("lineage(org, subject)", lineage, times),
        ("violations(org, subject) [API lineage]", subject_violations, times),
        ("lineage answer (both queries, as the API)", lineage_answer, times),
        ("violations(org, rule, since 7 d)", by_rule, times),
        ("stats() from counters", store.stats, times),
        ("latency() from counters", store.latency, times),
        ("dashboard chart, 7 d by hour (counter)", lambda: chart(store, events.time(size)), times),
        ("dashboard feed, newest 50 (FINAL)", lambda: feed_page(store, FeedFilter(), None, 50), 20),
        ("stats() the old way, FINAL (yardstick)", lambda: final_stats(store), 3),
    ]
    measured = {}
    for name, run, count in rows:
        p50, p99 = percentiles(run, count)
        print(f"  {name:<42} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  ({count} runs)")
        measured[name] = {"p50_ms": p50, "p99_ms": p99}
    print(f"  {load_average()}; {store_activity(store)}")
    lineage_found = sum(len(store.lineage(*events.subject(i))) for i in range(20))
    print(f"  ({lineage_found} lineage edges for 20 subjects; stats {store.stats()['tables']})")
    for name, call in (("lineage", lineage), ("subject's violations", subject_violations)):
        print(f"  {name} reads: {read_summary(store, call)}")
    print(f"  violations by org + rule + since reads: {read_summary(store, by_rule)}")
    return measured


def with_poller(bench: Bench, target: int) -> float:
    """Ingest rows/s while a dashboard polls stats() and latency() every second."""
    stop = threading.Event()
    polls: list[float] = []

    def poll() -> None:
        while not stop.wait(1.0):
            began = time.perf_counter()
            bench.store.stats()
            bench.store.latency()
            polls.append((time.perf_counter() - began) * 1000)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        rate = bench.fill(target)
    finally:
        stop.set()
        poller.join()
    if polls:
        polls.sort()
        p50, p99 = statistics.median(polls), polls[min(len(polls) - 1, int(len(polls) * 0.99))]
        print(
            f"  poller: {len(polls)} polls of stats()+latency() while ingesting: p50 {p50:.1f} ms,"
            f" p99 {p99:.1f} ms, slowest {polls[-1]:.1f} ms"
        )
    return rate


FILL_STEP = 1_000_000


def fill_to(bench: Bench, done: int, size: int, deadline: float) -> int:
    """Ingest up to `size` events in steps, stopping early past `deadline`; the size reached."""
    write_before, cpu_before = bench.write_seconds, bench.fill_cpu
    target, ingesting = done, 0.0
    while target < size and time.monotonic() < deadline:
        step = min(size, target + FILL_STEP) - target
        ingesting += step / bench.fill(target + step)
        target += step
    writing = bench.write_seconds - write_before
    rate = (target - done) / ingesting
    cpu_rate = (target - done) / (bench.fill_cpu - cpu_before)
    stopped = "" if target == size else f" (fill time budget spent: stopped short of {size:,})"
    print(
        f"\n{target:,} events{stopped}: ingest {done:,} -> {target:,} at {rate:,.0f} rows/s "
        f"= {rate / bench.raw_rate:.2f} x raw insert; Store.write_audit_columns alone "
        f"{(target - done) / writing:,.0f} rows/s; {load_average()}"
    )
    print(
        f"  per CPU second of the process: ingest {cpu_rate:,.0f} rows = "
        f"{cpu_rate / bench.raw_cpu_rate:.2f} x the raw insert's {bench.raw_cpu_rate:,.0f}"
    )
    return target


def compare_poller(bench: Bench, done: int, rows: int) -> tuple[int, float, float]:
    """The events stored after, and ingest rows/s without and with a dashboard poller."""
    quiet = bench.fill(done + rows)
    polled = with_poller(bench, done + 2 * rows)
    print(
        f"  ingest without poller {quiet:,.0f} rows/s, with a 1 s stats poller "
        f"{polled:,.0f} rows/s: ratio {polled / quiet:.2f}"
    )
    return done + 2 * rows, quiet, polled


def run(args: argparse.Namespace, sizes: list[int], directory: str) -> None:
    began = time.perf_counter()
    store = Store.open(f"chdb://{directory}")
    ensure_triage(store)  # the dashboard's, which its feed reads
    stored = store.stats()["tables"]["events"]
    print(
        f"store opened in {time.perf_counter() - began:.1f} s (schema and counters checked, "
        f"upgraded where older) holding {stored:,} events; {load_average()}"
    )
    events = Events(subjects=args.subjects or max(sizes) // 10)
    consumer = ScriptedConsumer(events, allowed=stored, next_event=stored)
    settings = Settings(sink_batch_size=args.batch_size)
    ingestor = Ingestor(settings, store, consumer_factory=lambda: consumer)
    sticks = yardsticks(store, events, min(500_000, sizes[0]), args.batch_size)
    print(
        f"yardstick: raw insert into a plain MergeTree {sticks.raw_insert:,.0f} rows/s "
        f"({sticks.raw_insert_cpu:,.0f} per CPU second); {load_average()}"
    )
    print(
        f"(decoding AuditBatch messages alone: {sticks.decode_columns:,.0f} records/s to Arrow "
        f"columns as ingest does, {sticks.decode_models:,.0f} records/s to models)"
    )
    bench = Bench(
        store,
        ingestor,
        consumer,
        events,
        raw_rate=sticks.raw_insert,
        raw_cpu_rate=sticks.raw_insert_cpu,
        stored_before=stored,
    )
    timed_writes(bench)
    deadline = time.monotonic() + args.fill_seconds
    ingestor.start()
    done = stored
    measured: dict[str, dict[str, Any]] = {}
    try:
        for size in (s for s in sizes if s >= done):
            if size > done and args.quick_fill and done >= sizes[0]:
                # Imported here: store_fill takes the history's constants from this module.
                from store_fill import quick_fill_to

                done = quick_fill_to(bench, done, size, deadline, args.quick_fill)
            elif size > done:
                done = fill_to(bench, done, size, deadline)
            queries = measure_queries(bench, done, args.runs)
            at, (done, quiet, polled) = done, compare_poller(bench, done, args.poll_rows)
            measured[str(size)] = {
                "events": at,
                "queries": queries,
                "ingest_rate": quiet,
                "ingest_rate_polled": polled,
            }
            if done < size:
                break
        ingestor.stop()
        recount = timed_recount(store, done)
    finally:
        ingestor.stop()
        store.close()
    print(f"\nmessage making excluded from the rates: {consumer.generating:.0f} s in total")
    print(load_average())
    write_figures(
        args.json,
        {"raw_insert_rate": sticks.raw_insert, "sizes": measured, "recount_seconds": recount},
    )


def timed_recount(store: Store, events: int) -> float:
    """What opening the store costs after its owner died holding it: every counter recounted
    from the rows (sinks/clickhouse/owner.py)."""
    before = store.stats()
    began = time.perf_counter()
    ensure_counters(store._client, store.database, recount=True)
    seconds = time.perf_counter() - began
    same = "the same" if store.stats() == before else "DIFFERENT"
    print(
        f"\nrecount of every counter, as when opened after its owner died, at {events:,} "
        f"events: {seconds:.1f} s (stats() {same} after it)"
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--batch-size", type=int, default=Settings().sink_batch_size)
    parser.add_argument("--poll-rows", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=200, help="runs per query")
    parser.add_argument(
        "--fill-seconds", type=float, default=900, help="stop filling after this long"
    )
    parser.add_argument(
        "--quick-fill",
        type=int,
        default=0,
        metavar="EVENTS",
        help="past the first size, fill through Store writes of this many events, without "
        "messages (store_fill.py); the ingest loop still runs at each size's poller segments",
    )
    parser.add_argument(
        "--subjects",
        type=int,
        default=0,
        help="subjects of the history (default: a tenth of the largest size); to measure a "
        "store an earlier run filled with other --sizes, give the number it used",
    )
    parser.add_argument(
        "--dir",
        help="data directory (default: a temporary one, removed); a store an earlier run left "
        "there (with the same largest size) is filled on from the events it holds",
    )
    add_json_option(parser)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    directory = args.dir or tempfile.mkdtemp(prefix="privtrail-bench-store-")
    print(f"store chdb://{directory}, ingest batches of {args.batch_size:,} rows")
    try:
        run(args, sizes, directory)
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
