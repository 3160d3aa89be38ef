"""A restarted worker with 1M subjects in its table: its memory, and how long it takes to recover.

    .venv/bin/python bench/recovery.py                        # 1M subjects on the embedded Kafka
    .venv/bin/python bench/recovery.py --subjects 200000 --profile

Starts Kafka on 127.0.0.1 and, as the yardstick's first half, a worker on an empty table: the
time from its start to "Worker ready" and to its first committed offset (one probe event), and
its RSS. Then fills the worker's state changelog with one entry per subject, in the format the
worker writes (`streams.entries.changelog_value`): each entry is a real history the judge made
of a demo subject's first event (an account opened, a consent given...), with its next
deadline, copied under N distinct subject keys. The same-run yardstick's second half reads
that changelog end to end with a bare aiokafka consumer. Then a fresh worker process recovers
its table from it: time to "Worker ready" (Faust's recovery done), to its first committed
offset (one probe event: its first batch also indexes every subject's deadlines, read off the
entries), and its RSS (peak and after). With --profile, py-spy samples the worker from its
start to its first commit and prints where that time went.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from figures import write_figures
from kafka import KafkaAdminClient
from profile_worker import PY_SPY, bench_main, group_committed, running_kafka

from config.settings import REPO_POLICIES, Settings
from privtrail.demo import default_start, demo_events
from privtrail.processes import spawn, stop_process_group
from streams.entries import changelog_value
from streams.judging import Incoming, Judge
from streams.rules.policy import load_policy_set

SEED = 11
APP_ID = "privtrail-recovery"
READY_LINE = "Worker ready"
READY_TIMEOUT = 900.0
# Seconds without a message before the bare read gives up.
BARE_READ_STALL = 60.0
# Demo events read for the histories the subjects' entries are copied from.
TEMPLATE_EVENTS = 20_000
PROFILE_RATE = 100
PROFILE_FRAMES = 15


@dataclass
class WorkerRun:
    ready_seconds: float
    first_commit_seconds: float
    peak_rss: int
    rss_after: int
    # CPU the worker used up to its first commit: what a busy machine's wait for a core leaves out.
    cpu_seconds: float


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--profile", action="store_true", help="py-spy the recovering worker")
    return bench_main(parser, "privtrail-recovery-", argv, _run)


def _run(args: argparse.Namespace, root: Path) -> None:
    with running_kafka(root) as (broker, worker_settings):
        settings = worker_settings.model_copy(update={"app_id": APP_ID})
        empty = _worker(settings, root / "empty", probe=0, profile=None)
        changelog = f"{APP_ID}-subject-state-changelog"
        templates = _templates(settings)
        started = time.monotonic()
        written = asyncio.run(_fill(settings, changelog, templates, args.subjects))
        fill_seconds = time.monotonic() - started
        read_seconds, read = asyncio.run(_bare_read(settings, changelog, args.subjects))
        profile = root / "py-spy.txt" if args.profile else None
        full = _worker(settings, root / "full", probe=1, profile=profile)
    print(f"broker: kafka ({broker.release()}); {settings.partitions} partitions")
    print(f"changelog: {args.subjects:,} subjects, {written / args.subjects:,.0f} B/entry")
    print(f"  written in {fill_seconds:.1f} s; {len(templates)} distinct histories")
    print(f"bare aiokafka read of the changelog: {read:,} messages in {read_seconds:.1f} s")
    _report(empty, full, args.subjects, read_seconds)
    write_figures(
        args.json,
        {
            "subjects": args.subjects,
            "bare_read_seconds": read_seconds,
            "recovery_seconds": full.first_commit_seconds - empty.first_commit_seconds,
            "empty": asdict(empty),
            "full": asdict(full),
        },
    )
    if profile is not None:
        _print_profile(profile)


def _templates(settings: Settings) -> list[bytes]:
    """Changelog values of subjects that have had one event each, made by the real judge."""
    first: dict[bytes | None, bytes] = {}
    for event in demo_events(SEED, TEMPLATE_EVENTS, default_start(), malformed_share=0):
        first.setdefault(event.key, event.value)
    judge = Judge(load_policy_set(REPO_POLICIES), b"recovery-bench")
    batch = [
        Incoming(settings.topics.events, 0, offset, key, value)
        for offset, (key, value) in enumerate(first.items())
    ]
    verdicts = judge.judge_batch(batch, lambda key: None)
    version = judge.policy.version
    return [
        changelog_value(0, history, version, judge.next_due(key))
        for key, (_, history) in verdicts.histories.items()
    ]


async def _fill(settings: Settings, topic: str, templates: list[bytes], subjects: int) -> int:
    """One entry per subject, keyed as the table keys them (a JSON string); bytes written."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, max_batch_size=1 << 20)
    await producer.start()
    written = 0
    try:
        sent = []
        for partition in range(settings.partitions):
            batch = producer.create_batch()
            for subject in range(partition, subjects, settings.partitions):
                key = json.dumps(hashlib.sha256(b"%d" % subject).hexdigest()).encode()
                template = templates[subject % len(templates)]
                # The entry's partition is the one it is written to, as the worker writes it.
                value = b'{"partition":%d' % partition + template[len(b'{"partition":0') :]
                written += len(key) + len(value)
                if batch.append(key=key, value=value, timestamp=None) is None:
                    sent.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            sent.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return written


async def _bare_read(settings: Settings, topic: str, expected: int) -> tuple[float, int]:
    """Seconds to read the `expected` messages of `topic` (one per subject, none compacted
    away: each key was written once) from its start, and the messages read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started, read = time.monotonic(), 0
        last_progress = started
        while read < expected:
            fetched = await consumer.getmany(timeout_ms=1000)
            got = sum(len(messages) for messages in fetched.values())
            read += got
            now = time.monotonic()
            if got:
                last_progress = now
            elif now - last_progress > BARE_READ_STALL:
                raise SystemExit(f"bare read stalled at {read:,} of {expected:,} messages")
        return time.monotonic() - started, read
    finally:
        await consumer.stop()


def _worker(settings: Settings, data_dir: Path, probe: int, profile: Path | None) -> WorkerRun:
    """Start a worker on a fresh data dir; time it to ready and to a probe event's commit."""
    settings = settings.model_copy(update={"data_dir": data_dir})
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "worker.log"
    env = {**os.environ, **settings.as_env()}
    before = _committed_now(settings)
    started = time.monotonic()
    worker = spawn([sys.executable, "-m", "privtrail", "worker"], log_path, env)
    spy = _py_spy(worker.pid, profile) if profile else None
    status = Path(f"/proc/{worker.pid}/status")
    try:
        _wait(lambda: READY_LINE in log_path.read_text(errors="replace"), worker, "ready")
        ready = time.monotonic() - started
        asyncio.run(_send_probe(settings, probe))
        _wait(lambda: _committed_now(settings) > before, worker, "its first commit")
        first_commit = time.monotonic() - started
        if spy is not None:
            spy.send_signal(2)
            spy.wait(120)
        memory = _memory(status)
        cpu = _cpu_seconds(Path(f"/proc/{worker.pid}/stat"))
    finally:
        stop_process_group(worker, 30)
    return WorkerRun(ready, first_commit, memory["VmHWM"], memory["VmRSS"], cpu)


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    argv = [str(PY_SPY), "record", "--format", "raw", "--rate", str(PROFILE_RATE)]
    argv += ["--pid", str(pid), "--output", str(out), "--nonblocking", "--gil"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _send_probe(settings: Settings, salt: int) -> None:
    """One demo event for a subject of its own, so the worker has a batch to judge and commit."""
    event = next(demo_events(SEED + salt, 1, default_start(), malformed_share=0, salt=str(salt)))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topics.events, event.value, key=event.key)
    finally:
        await producer.stop()


def _committed_now(settings: Settings) -> int:
    with KafkaAdminClient(bootstrap_servers=settings.bootstrap) as admin:
        return group_committed(admin, settings) or 0


def _wait(done: Callable[[], bool], worker: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not done():
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not reach {what} in {READY_TIMEOUT:.0f} s")
        time.sleep(0.1)


def _memory(status: Path) -> dict[str, int]:
    """The process's resident set now and at its peak, in bytes (from /proc/PID/status)."""
    fields = {}
    for line in status.read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def _cpu_seconds(stat: Path) -> float:
    """User plus system CPU time of the process so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report(empty: WorkerRun, full: WorkerRun, subjects: int, read_seconds: float) -> None:
    mib = 1 << 20
    print(f"{'worker':<34} {'empty table':>12} {f'{subjects:,} subjects':>16}")
    rows = [
        ("start -> Worker ready, s", empty.ready_seconds, full.ready_seconds, ".1f"),
        ("start -> first commit, s", empty.first_commit_seconds, full.first_commit_seconds, ".1f"),
        ("CPU time to the first commit, s", empty.cpu_seconds, full.cpu_seconds, ".1f"),
        ("peak RSS, MiB", empty.peak_rss / mib, full.peak_rss / mib, ",.0f"),
        ("RSS after the first commit, MiB", empty.rss_after / mib, full.rss_after / mib, ",.0f"),
    ]
    for name, before, after, spec in rows:
        print(f"{name:<34} {before:>12{spec}} {after:>16{spec}}")
    recovery = full.first_commit_seconds - empty.first_commit_seconds
    print(f"recovery (first commit, full minus empty table): {recovery:.1f} s")
    print(f"recovery / bare read of the changelog: {recovery / read_seconds:.1f}")


def _print_profile(path: Path) -> None:
    """The recovering worker's samples by deepest frame in faust, mode, aiokafka or privtrail."""
    wanted = ("faust/", "mode/", "aiokafka/", "streams/", "events/", "pydantic")
    deepest: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        leaves[frames[-1]] += int(samples)
        ours = [f for f in frames if any(part in f for part in wanted)]
        deepest[ours[-1] if ours else "other"] += int(samples)
    total = sum(deepest.values())
    print(f"py-spy, {total / PROFILE_RATE:.1f} s holding the GIL, by deepest library frame:")
    for frame, count in deepest.most_common(PROFILE_FRAMES):
        print(f"  {count / PROFILE_RATE:>6.1f} s  {frame}")
    print("by leaf frame:")
    for frame, count in leaves.most_common(PROFILE_FRAMES):
        print(f"  {count / PROFILE_RATE:>6.1f} s  {frame}")


if __name__ == "__main__":
    sys.exit(main())
