"""Where one event's time goes in the worker, by stage, while it catches up on a backlog.

    .venv/bin/python bench/profile_worker.py                  # 40k events on the embedded Kafka
    .venv/bin/python bench/profile_worker.py --events 20000 --rate 500

Starts an embedded broker on 127.0.0.1, pre-produces N demo events to the events topic, starts a
worker process, and once it has committed its first offsets attaches py-spy to it until it has
committed all N. Each py-spy sample (of the thread holding the GIL: Python work) is put in the
stage of its deepest frame that names one (table below); a sample in no stage is Faust's and
aiokafka's delivery when it runs in faust/, mode/, aiokafka/ or asyncio, else "other". Prints
microseconds per event for each stage: samples / rate / events judged while sampled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aiokafka import AIOKafkaProducer
from figures import add_json_option, write_figures
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from config.settings import Settings
from privtrail.brokers import EmbeddedBroker, embedded_broker, tuned_settings
from privtrail.brokers.apache_kafka import free_port
from privtrail.demo import default_start, demo_events
from privtrail.processes import spawn, stop_process_group
from privtrail.topics import ensure_topics

SEED = 11
CATCH_UP_TIMEOUT = 600.0
# The machine may be busy: Kafka's own start can take longer than the launcher's default.
BROKER_START_TIMEOUT = 180.0
PY_SPY = Path(sys.executable).with_name("py-spy")

# Faust's offset commit, from its commit timer (aiokafka's requests included).
COMMITS = ("commit", "_commit", "_commit_tps", "_commit_offsets", "force_commit")
# (stage, file fragment, function): a sample belongs to the stage of its deepest matching frame.
STAGES = [
    ("messages in", "streams/app.py", "_incoming"),
    ("acks", "streams/batching.py", "settle"),
    ("messages in", "streams/batching.py", ""),
    ("messages in", "streams/transport.py", "getmany"),
    ("offset order", "streams/app.py", "_in_order"),
    ("parsing+validation", "streams/judging.py", "_accept"),
    ("judging: rules", "streams/rules/", ""),
    ("state fold", "streams/state.py", "apply"),
    ("judging: the rest", "streams/judging.py", "judge_batch"),
    ("judging: the rest", "streams/judging.py", "judge_due"),
    ("output encoding", "events/fitting.py", ""),
    ("produce", "streams/app.py", "_publish"),
    ("produce", "aiokafka/producer", ""),
    ("changelog", "streams/app.py", "_persist"),
    ("changelog", "streams/entries.py", "changelog_value"),
    ("changelog", "streams/entries.py", "keep"),
    # Loading entries and indexing their deadlines, as when this was in streams/app.py.
    ("worker bookkeeping", "streams/entries.py", ""),
    *(("commit", "faust/transport/consumer.py", name) for name in COMMITS),
    # What is left of the worker's own code: generation, deadline index, lag, rewinds.
    ("worker bookkeeping", "streams/app.py", ""),
]
DELIVERY = ("faust/", "mode/", "aiokafka/", "asyncio/", "kafka/")
DELIVERY_STAGE = "Faust/aiokafka delivery"
# Delivery's heaviest library frames, printed under the table.
DELIVERY_FRAMES = 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    return bench_main(parser, "privtrail-profile-", argv, _run)


def bench_main(
    parser: argparse.ArgumentParser,
    prefix: str,
    argv: list[str] | None,
    run: Callable[[argparse.Namespace, Path], None],
) -> int:
    """Parse `argv` with `--keep` and `--json` added, then `run` in a temporary directory."""
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    add_json_option(parser)
    args = parser.parse_args(argv)
    in_temporary_dir(prefix, args.keep, lambda root: run(args, root))
    return 0


def in_temporary_dir(prefix: str, keep: bool, run: Callable[[Path], None]) -> None:
    """`run` in a new temporary directory, removed afterwards unless `keep`."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        run(root)
    finally:
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_kafka(root: Path) -> Iterator[tuple[EmbeddedBroker, Settings]]:
    """Kafka on 127.0.0.1 with its files in `root`, and a worker's settings on it, its topics
    made; the broker is stopped on leaving."""
    broker = embedded_broker("kafka", free_port(), root / "broker")
    broker.start(timeout=BROKER_START_TIMEOUT)
    try:
        settings = _settings(broker.bootstrap, broker.port, root / "worker")
        ensure_topics(settings)
        yield broker, settings
    finally:
        broker.stop()


def _run(args: argparse.Namespace, root: Path) -> None:
    with running_kafka(root) as (broker, settings):
        asyncio.run(preproduce(settings, args.events))
        judged, seconds, samples = _profile_worker(settings, args, root)
    _report(args, broker.release(), judged, seconds, samples)


def _settings(bootstrap: str, port: int, data_dir: Path) -> Settings:
    settings = Settings(
        data_dir=data_dir,
        kafka_bootstrap=None,
        embedded_kafka_port=port,
        app_id="privtrail-profile",
    )
    return tuned_settings(settings).model_copy(update={"kafka_bootstrap": bootstrap})


async def preproduce(settings: Settings, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=20)
    await producer.start()
    try:
        for event in demo_events(SEED, count, default_start(), malformed_share=0):
            await producer.send(settings.topics.events, event.value, key=event.key)
        await producer.flush()
    finally:
        await producer.stop()


def _profile_worker(
    settings: Settings, args: argparse.Namespace, root: Path
) -> tuple[int, float, tuple[Counter[str], Counter[str]]]:
    out = root / "py-spy.txt"

    def attach(pid: int) -> Callable[[], None]:
        spy = subprocess.Popen(
            [
                str(PY_SPY),
                "record",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "--pid",
                str(pid),
                "--output",
                str(out),
                "--nonblocking",
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def detach() -> None:
            spy.send_signal(2)
            spy.wait(60)

        return detach

    judged, seconds = catch_up(settings, args.events, root / "worker.log", attach)
    return judged, seconds, _stages(out)


def catch_up(
    settings: Settings,
    backlog: int,
    log: Path,
    attach: Callable[[int], Callable[[], None]] | None = None,
) -> tuple[int, float]:
    """Start a worker on a topic holding `backlog` events; the events it committed from its
    first commit to its last, and the seconds between. `attach` is called with the worker's
    pid at its first commit, and what it returns once the worker has committed them all."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.as_env()}
    worker = spawn([sys.executable, "-m", "privtrail", "worker"], log, env)
    try:
        start = _wait_for_commits(settings, lambda done: done > 0)
        started = time.monotonic()
        detach = attach(worker.pid) if attach is not None else None
        end = _wait_for_commits(settings, lambda done: done >= backlog)
        seconds = time.monotonic() - started
        if detach is not None:
            detach()
    finally:
        stop_process_group(worker, 30)
    return end - start, seconds


def _wait_for_commits(settings: Settings, done: Callable[[int], bool]) -> int:
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    with KafkaAdminClient(bootstrap_servers=settings.bootstrap) as admin:
        while time.monotonic() < deadline:
            committed = group_committed(admin, settings)
            if committed is not None and done(committed):
                return committed
            time.sleep(0.1)
    raise RuntimeError(f"the worker did not commit in {CATCH_UP_TIMEOUT:.0f} s")


def group_committed(admin: KafkaAdminClient, settings: Settings) -> int | None:
    """The worker group's committed offsets summed, or None while the group has no coordinator."""
    try:
        offsets = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
    except KafkaError:
        return None
    total: int = sum(
        meta.offset
        for tp, meta in offsets.items()
        if tp.topic == settings.topics.events and meta.offset > 0
    )
    return total


def _stages(path: Path) -> tuple[Counter[str], Counter[str]]:
    """Samples by stage, and the delivery stage's samples by its deepest library frame."""
    stages: Counter[str] = Counter()
    delivery: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        stage = _stage(frames)
        stages[stage] += int(count)
        if stage == DELIVERY_STAGE:
            delivery[_library_frame(frames)] += int(count)
    return stages, delivery


def _stage(frames: list[str]) -> str:
    for frame in reversed(frames):
        # py-spy names a method with its class: "Judge.judge_batch (streams/judging.py:135)".
        function = frame.split(" (", 1)[0].rsplit(".", 1)[-1]
        for stage, fragment, wanted in STAGES:
            if fragment in frame and wanted in ("", function):
                return stage
    if any(part in frame for frame in frames for part in DELIVERY):
        return DELIVERY_STAGE
    return "other"


def _library_frame(frames: list[str]) -> str:
    return next(f for f in reversed(frames) if any(part in f for part in DELIVERY))


def _report(
    args: argparse.Namespace,
    release: str,
    judged: int,
    seconds: float,
    samples: tuple[Counter[str], Counter[str]],
) -> None:
    stages, delivery = samples
    print(f"broker: kafka ({release}); {judged} events judged while sampled in {seconds:.1f} s")
    print(f"worker rate while sampled: {judged / seconds:,.0f} events/s (with py-spy attached)")
    total = sum(stages.values())
    scale = 1e6 / args.rate / judged
    print(f"{'stage':<26} {'us/event':>9} {'share':>6}")
    for stage, count in stages.most_common():
        print(f"{stage:<26} {count * scale:>9.1f} {100 * count / total:>5.1f}%")
    print(f"{'total (holding the GIL)':<26} {total * scale:>9.1f}")
    print("delivery's deepest library frames, us/event:")
    for frame, count in delivery.most_common(DELIVERY_FRAMES):
        print(f"  {count * scale:>7.1f}  {frame}")
    figures = {
        "judged": judged,
        "rate": judged / seconds,
        "total_us": total * scale,
        "stages_us": {stage: count * scale for stage, count in stages.most_common()},
    }
    write_figures(args.json, figures)


if __name__ == "__main__":
    sys.exit(main())
