"""Throughput of the privtrail pipeline, against a bare consume->produce loop on the same broker.

    make bench-throughput                       # 100k events on the embedded Kafka broker
    make bench-throughput ARGS="--broker noida --events 20000"
    make bench-throughput ARGS="--mode steady --rate 5000 --seconds 60"

Everything runs on 127.0.0.1 in a temporary directory: an embedded broker, then

1. the baseline (bare_loop.py): a bare aiokafka loop that consumes N pre-produced messages
   (the same demo events, same keys and sizes) from one topic and produces each to another, per
   batch of up to `--batch-size`, flushing before it commits, as the worker does;
2. the pipeline: the store/API process and one worker as real processes, N demo events sent
   through the emitter SDK with their `time` set to the moment of sending, and the wait until
   all of them are stored. `--mode burst` (the default) sends them all at once, so its latency
   is mostly queueing; `--mode steady` sends `--rate` events/s for `--seconds` (N = rate x
   seconds), paced, and its latency is what an event waits under that load until the store
   returns it (`stored_at` is set by the insert that makes the row queryable).

It prints figures, never judges them. The figure to track is the ratio of the pipeline's
end-to-end events/s to the bare loop's messages/s: how much of what the broker and its Python
client allow the pipeline actually gets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TypeVar

from bare_loop import (
    STALL_SECONDS,
    BareResult,
    BenchError,
    Message,
    bare_loop,
    demo_workload,
    now_iso,
    progress,
)
from figures import add_json_option, write_figures

from config.settings import Settings
from events.emitter import EmitError, Emitter
from privtrail.brokers import (
    BROKERS,
    BrokerError,
    EmbeddedBroker,
    broker_class,
    embedded_broker,
    tuned_settings,
)
from privtrail.brokers.apache_kafka import free_port
from privtrail.client import ApiClient, ApiError
from privtrail.credentials import api_client
from privtrail.schemas import Latency
from privtrail.stack import Stack, StackError
from privtrail.topics import TopicError

DEFAULT_EVENTS = 100_000
DEFAULT_RATE = 5000
DEFAULT_SECONDS = 60.0
# A paced sender checks the clock once per this many sends.
PACE_EVERY = 50
POLL_SECONDS = 1.0
PROGRESS_SECONDS = 10.0
WARMUP_TIMEOUT = 120.0
# On a busy machine Kafka can take longer to start than the launcher's default allows.
BROKER_START_TIMEOUT = 180.0

T = TypeVar("T")


@dataclass(frozen=True)
class PipelineResult:
    # Events/s the sender was paced to, None for a burst.
    target_rate: int | None
    emit_seconds: float
    # Wall-clock time of the first send to the last row stored.
    end_to_end_seconds: float
    latency: Latency
    violations: int

    @property
    def events(self) -> int:
        return self.latency.events

    @property
    def emit_rate(self) -> float:
        return self.events / self.emit_seconds

    @property
    def rate(self) -> float:
        return self.events / self.end_to_end_seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="privtrail-bench-"))
    code = 0
    try:
        _run(args, root)
    except KeyboardInterrupt:
        progress("interrupted; everything started has been stopped")
        code = 130
    except (BenchError, BrokerError, EmitError, StackError, TopicError) as error:
        progress(f"benchmark failed: {error}")
        code = 1
    finally:
        # The process logs in it are what explains a failure.
        if args.keep or code == 1:
            progress(f"kept {root} (process logs: {root / 'pipeline'}/*.log)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return code


def _parser() -> argparse.ArgumentParser:
    defaults = Settings.model_fields
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=_positive, default=DEFAULT_EVENTS, help="events to send")
    parser.add_argument("--broker", choices=sorted(BROKERS), default="kafka")
    parser.add_argument("--partitions", type=_positive, default=defaults["partitions"].default)
    parser.add_argument(
        "--batch-size",
        type=_positive,
        default=defaults["batch_size"].default,
        help="most events the worker judges at once (and the bare loop's batch)",
    )
    parser.add_argument(
        "--worker-delivery",
        choices=["batches", "events"],
        default=defaults["worker_delivery"].default,
        help="the worker takes the source topic in whole fetches or through Faust's stream",
    )
    parser.add_argument(
        "--processing-guarantee",
        choices=["at_least_once", "exactly_once"],
        default=defaults["processing_guarantee"].default,
        help="the worker's Faust processing guarantee",
    )
    parser.add_argument(
        "--mode",
        choices=["burst", "steady"],
        default="burst",
        help="burst: send all events at once; steady: send --rate events/s for --seconds",
    )
    parser.add_argument("--rate", type=_positive, default=DEFAULT_RATE, help="steady events/s")
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, help="how long steady mode sends"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    add_json_option(parser)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwinds like Ctrl-C, so the finally blocks stop the processes and the broker.
    raise KeyboardInterrupt


def _run(args: argparse.Namespace, root: Path) -> None:
    broker = embedded_broker(args.broker, free_port(), root / "broker")
    progress(f"starting the {args.broker} broker")
    broker.start(timeout=BROKER_START_TIMEOUT)
    try:
        settings = _settings(args, broker, root / "pipeline")
        count = args.events if args.mode == "burst" else round(args.rate * args.seconds)
        messages = demo_workload(count)
        progress("bare consume->produce loop")
        bare = asyncio.run(bare_loop(broker.bootstrap, messages, settings))
        rate = args.rate if args.mode == "steady" else None
        pipeline = _pipeline(settings, messages, rate)
    finally:
        broker.stop()
    _report(settings, messages, bare, pipeline)
    write_figures(args.json, _figures(bare, pipeline))


def _settings(args: argparse.Namespace, broker: EmbeddedBroker, data_dir: Path) -> Settings:
    settings = Settings(
        data_dir=data_dir,
        kafka_bootstrap=None,
        broker=args.broker,
        embedded_kafka_port=broker.port,
        partitions=args.partitions,
        batch_size=args.batch_size,
        worker_delivery=args.worker_delivery,
        processing_guarantee=args.processing_guarantee,
        api_port=free_port(),
        app_id="privtrail-bench",
    )
    # Tuned as for the embedded broker, then pointed at the running one.
    return tuned_settings(settings).model_copy(update={"kafka_bootstrap": broker.bootstrap})


def _pipeline(settings: Settings, messages: list[Message], rate: int | None) -> PipelineResult:
    progress("starting the store/API process and a worker")
    with Stack(settings) as stack, api_client(settings) as api:
        warmup = _warm_up(stack, api, settings)
        pace = f" at {rate} events/s" if rate else ""
        progress(f"pipeline: sending {len(messages)} events{pace}")
        first_emit, emit_seconds = _emit(settings, messages, rate)
        _wait_until_stored(stack, api, warmup + len(messages))
        latency = api.latency(since=first_emit)
        violations = api.stats().violations
    last = latency.last_stored_at
    if latency.events != len(messages) or last is None:
        raise BenchError(f"{latency.events} of {len(messages)} events stored since the first send")
    end_to_end = (last - first_emit).total_seconds()
    return PipelineResult(rate, emit_seconds, end_to_end, latency, violations)


def _warm_up(stack: Stack, api: ApiClient, settings: Settings) -> int:
    """Send a few events to every partition and wait until they are stored, so the measured
    run does not include the worker joining its group and the store's first write."""
    count = max(64, 16 * settings.partitions)
    with Emitter(settings.bootstrap, source="/bench/warm-up", topic=settings.topics.events) as sdk:
        for number in range(count):
            sdk.account_changed("connectx", f"bench-warm-up-{number}", "customer", "created")
    progress("warming up: waiting for the worker to join and the store to write")
    _wait_until_stored(stack, api, count, stall=WARMUP_TIMEOUT)
    return count


def _emit(settings: Settings, messages: list[Message], rate: int | None) -> tuple[datetime, float]:
    """Send every message stamped with its send time, at once or `rate` a second; return the
    first stamp and the seconds from the first send until the broker acknowledged the last."""
    with Emitter(settings.bootstrap, source="/bench", topic=settings.topics.events) as sdk:
        first = datetime.now(UTC)
        started = time.perf_counter()
        for number, message in enumerate(messages):
            if rate and number % PACE_EVERY == 0:
                _wait_until(started + number / rate)
            sdk.send_raw(message.key, message.value(now_iso()))
        sdk.flush()
        return first, time.perf_counter() - started


def _wait_until(moment: float) -> None:
    ahead = moment - time.perf_counter()
    if ahead > 0:
        time.sleep(ahead)


def _wait_until_stored(
    stack: Stack, api: ApiClient, expected: int, stall: float = STALL_SECONDS
) -> None:
    """Wait on the ingest loop's written-row count, which costs the store nothing to answer,
    then confirm with the stored count (duplicates counted once), which queries every table."""
    _wait_for(stack, expected, lambda: _rows_written(api), stall)
    _wait_for(stack, expected, lambda: _api_call(api.stats).events, stall)


def _wait_for(stack: Stack, expected: int, count: Callable[[], int], stall: float) -> None:
    stored, last_change = -1, time.monotonic()
    last_progress = last_change
    while True:
        stack.check_alive()
        now, current = time.monotonic(), count()
        if current >= expected:
            return
        if current != stored:
            stored, last_change = current, now
        elif now - last_change > stall:
            raise BenchError(
                f"no new event stored for {stall:.0f} s ({stored} of {expected}); "
                f"see the logs in {stack.settings.data_dir}"
            )
        if now - last_progress >= PROGRESS_SECONDS:
            progress(f"  stored {stored} of {expected}")
            last_progress = now
        time.sleep(POLL_SECONDS)


def _rows_written(api: ApiClient) -> int:
    ingest = _api_call(api.health).ingest
    if ingest is None:
        raise BenchError(f"the service at {api.base_url} runs no ingest loop")
    return ingest.rows_written.get("events", 0)


def _api_call(call: Callable[[], T]) -> T:
    try:
        return call()
    except ApiError as error:
        raise BenchError(f"the query API failed: {error}") from error


def _report(
    settings: Settings, messages: list[Message], bare: BareResult, pipeline: PipelineResult
) -> None:
    average_size = sum(m.size for m in messages) / len(messages)
    release = broker_class(settings.broker).release()
    tuning = settings.producer_max_batch_size or "client default"
    rows = [
        ("machine", f"{os.cpu_count()} cores, Python {platform.python_version()}, {_host()}"),
        ("broker", f"{settings.broker} ({release}), producer batch {tuning}"),
        (
            "settings",
            f"partitions={settings.partitions} batch_size={settings.batch_size} "
            f"batch_window={settings.batch_window}s sink_batch_size={settings.sink_batch_size} "
            f"sink_flush_interval={settings.sink_flush_interval}s "
            f"processing_guarantee={settings.processing_guarantee} "
            f"worker_delivery={settings.worker_delivery}",
        ),
        ("workload", f"{len(messages)} demo events, {average_size:.0f} B on average"),
        ("", ""),
        ("bare consume->produce", f"{bare.rate:>9,.0f} msgs/s   ({bare.seconds:.1f} s)"),
        ("pipeline emit", f"{pipeline.emit_rate:>9,.0f} events/s ({pipeline.emit_seconds:.1f} s)"),
        (
            "pipeline end to end",
            f"{pipeline.rate:>9,.0f} events/s ({pipeline.end_to_end_seconds:.1f} s, first emit "
            "to last stored)",
        ),
        ("emit-to-stored latency", _latency(pipeline)),
        ("violations stored", f"{pipeline.violations:,}"),
        ("", ""),
        ("pipeline / bare", f"{pipeline.rate / bare.rate:.3f}"),
        ("mode", _mode(pipeline, bare)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}".rstrip())


def _figures(bare: BareResult, pipeline: PipelineResult) -> dict[str, float | int | None]:
    latency = pipeline.latency
    return {
        "bare_rate": bare.rate,
        "events": pipeline.events,
        "target_rate": pipeline.target_rate,
        "emit_rate": pipeline.emit_rate,
        "end_to_end_rate": pipeline.rate,
        "ratio": pipeline.rate / bare.rate,
        "p50_ms": latency.p50_ms,
        "p99_ms": latency.p99_ms,
        "max_ms": latency.max_ms,
        "violations": pipeline.violations,
    }


def _mode(pipeline: PipelineResult, bare: BareResult) -> str:
    if pipeline.target_rate is None:
        return "burst: every event sent at once"
    # The sender falls short of its target when the emitter cannot keep up on this machine.
    return (
        f"steady: paced to {pipeline.target_rate:,} events/s, sent {pipeline.emit_rate:,.0f} "
        f"events/s for {pipeline.emit_seconds:.0f} s ({pipeline.emit_rate / bare.rate:.3f} of "
        "the bare loop)"
    )


def _latency(pipeline: PipelineResult) -> str:
    latency = pipeline.latency
    figures = f"p50 {_ms(latency.p50_ms)}, p99 {_ms(latency.p99_ms)}, max {_ms(latency.max_ms)}"
    if pipeline.target_rate is None:
        return f"{figures} (all sent at once: mostly queueing)"
    return f"{figures} (sent at a steady rate: the time until the store returns an event)"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def _host() -> str:
    return f"{platform.system()} {platform.machine()}"


if __name__ == "__main__":
    sys.exit(main())
