"""The emitter SDK against a bare kafka-python producer, and parsing against bare `json.loads`.

    .venv/bin/python bench/emitter.py --events 30000

One run, on 127.0.0.1 in a temporary directory: an embedded Apache Kafka broker and a topic per
measured line (4 partitions). The workload is N demo events (`privtrail/demo.py`, valid only,
about 430 bytes each), in rounds:

- bare producer (yardstick): kafka-python with the SDK's producer settings sends the events'
  pre-encoded bytes and keys, then flushes;
- SDK helpers: the same events through the typed helpers (`data_accessed`, `shared`, ...),
  each validated, encoded and sent, then `flush()`;
- SDK emit(dict): the same events as CloudEvent dicts through `Emitter.emit`.

Each figure is events/s from the first send until the broker acknowledged the last; the ratio
to the bare producer of the same round is the figure to track. Then, without a broker: every
compression codec kafka-python has here, on the bare producer (events/s and compressed size of
a batch), and `parse_event` / `parse_structure` against bare `json.loads` of the same messages.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka import codec as kafka_codec
from kafka.admin import KafkaAdminClient, NewTopic

from config.settings import REPO_POLICIES
from events.emitter import PRODUCER_DEFAULTS, Emitter
from events.models import EventType, PrivacyEvent
from events.validation import parse_event, parse_structure
from privtrail.brokers import embedded_broker
from privtrail.demo import DemoEvent, default_start, demo_events
from streams.rules.policy import load_policy_set

SEED = 7
PARTITIONS = 4
HEADERS = [("content-type", b"application/cloudevents+json")]
CODECS: dict[str, Callable[[], bool]] = {
    "none": lambda: True,
    "gzip": kafka_codec.has_gzip,
    "lz4": kafka_codec.has_lz4,
    "zstd": kafka_codec.has_zstd,
    "snappy": kafka_codec.has_snappy,
}
HELPERS = {
    EventType.DATA_ACCESSED: "data_accessed",
    EventType.DATA_SHARED: "shared",
    EventType.CONSENT_CHANGED: "consent_changed",
    EventType.SETTINGS_CHANGED: "settings_changed",
    EventType.ACCOUNT_CHANGED: "account_changed",
    EventType.REQUEST_OPENED: "request_opened",
    EventType.REQUEST_FULFILLED: "request_fulfilled",
    EventType.LEGAL_HOLD_CHANGED: "legal_hold_changed",
}
# Nested `data` objects whose fields the helpers take flat, under these prefixes.
FLATTENED = {"subject": "subject_", "actor": "actor_", "recipient": "recipient_"}

Send = Callable[[str, Sequence[DemoEvent]], float]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events = [e for e in demo_events(SEED, args.events, default_start(), malformed_share=0)]
    with tempfile.TemporaryDirectory(prefix="privtrail-bench-emitter-") as root:
        broker = embedded_broker("kafka", _free_port(), Path(root) / "broker")
        _progress("starting the kafka broker")
        broker.start()
        try:
            _report_sends(broker.bootstrap, events, args.rounds)
            _report_codecs(broker.bootstrap, events)
        finally:
            broker.stop()
    _report_parsing([e.value for e in events])


# --- Sending --------------------------------------------------------------------------------


def _report_sends(bootstrap: str, events: Sequence[DemoEvent], rounds: int) -> None:
    lines: dict[str, Send] = {
        "bare kafka-python producer (yardstick)": lambda topic, batch: _bare(
            bootstrap, topic, batch, PRODUCER_DEFAULTS.get("compression_type", "none")
        ),
        "SDK typed helpers": lambda topic, batch: _sdk(bootstrap, topic, batch, _via_helpers),
        "SDK emit(dict)": lambda topic, batch: _sdk(bootstrap, topic, batch, _via_dicts),
    }
    rates: dict[str, list[float]] = {name: [] for name in lines}
    for number in range(rounds):
        for index, (name, send) in enumerate(lines.items()):
            topic = f"bench-{number}-{index}"
            _create_topic(bootstrap, topic)
            _progress(f"round {number + 1}: {name}")
            rates[name].append(send(topic, events))
    yardstick = rates["bare kafka-python producer (yardstick)"]
    print(f"workload: {len(events)} demo events, {_mean_size(events):.0f} B each, {rounds} rounds")
    print(f"producer: {_settings_text()}")
    for name, measured in rates.items():
        ratios = [rate / bare for rate, bare in zip(measured, yardstick, strict=True)]
        print(
            f"{name:<40} median {statistics.median(measured):>8,.0f} events/s"
            f"  ({', '.join(f'{r:,.0f}' for r in measured)})"
            f"  / bare: median {statistics.median(ratios):.2f}"
        )


def _bare(bootstrap: str, topic: str, events: Sequence[DemoEvent], compression: str) -> float:
    settings = {
        **PRODUCER_DEFAULTS,
        "compression_type": None if compression == "none" else compression,
    }
    producer = KafkaProducer(bootstrap_servers=bootstrap, **settings)
    try:
        producer.send(topic, b"warm-up").get(timeout=60)  # metadata and connections
        started = time.perf_counter()
        for event in events:
            producer.send(topic, value=event.value, key=event.key, headers=list(HEADERS))
        producer.flush()
        return len(events) / (time.perf_counter() - started)
    finally:
        producer.close()


def _sdk(
    bootstrap: str,
    topic: str,
    events: Sequence[DemoEvent],
    send_all: Callable[[Emitter, Iterable[PrivacyEvent]], None],
) -> float:
    calls = [e.event for e in events if e.event is not None]
    with Emitter(bootstrap, source="/bench/emitter", topic=topic) as emitter:
        emitter.send_raw(b"warm-up", b"{}")
        emitter.flush()
        started = time.perf_counter()
        send_all(emitter, calls)
        emitter.flush()
        return len(calls) / (time.perf_counter() - started)


def _via_helpers(emitter: Emitter, events: Iterable[PrivacyEvent]) -> None:
    # Arguments are prepared first: the figure is the SDK's work, not this script's.
    calls = [_helper_call(emitter, event) for event in events]
    started = time.perf_counter()
    for helper, arguments in calls:
        helper(**arguments)
    _progress(f"  {len(calls) / (time.perf_counter() - started):,.0f} helper calls/s (sends)")


def _via_dicts(emitter: Emitter, events: Iterable[PrivacyEvent]) -> None:
    dicts = [json.loads(event.model_dump_json(exclude_none=True)) for event in events]
    for event in dicts:
        emitter.emit(event)


def _helper_call(
    emitter: Emitter, event: PrivacyEvent
) -> tuple[Callable[..., str], dict[str, Any]]:
    data = json.loads(event.data.model_dump_json(exclude_none=True))
    arguments: dict[str, Any] = {"event_id": event.id, "time": event.time}
    for name, value in data.items():
        if name in FLATTENED:
            arguments.update({FLATTENED[name] + key: item for key, item in value.items()})
        elif name in ("transfer", "settings"):
            arguments.update(value)
        else:
            arguments[name] = value
    return getattr(emitter, HELPERS[event.type]), arguments


# --- Compression ----------------------------------------------------------------------------


def _report_codecs(bootstrap: str, events: Sequence[DemoEvent]) -> None:
    batch = b"".join(e.value for e in events)[: PRODUCER_DEFAULTS["batch_size"]]
    print(f"compression, bare producer, batch of {len(batch) // 1024} KiB of demo values:")
    for name, available in CODECS.items():
        if not available():
            print(f"  {name:<7} not installed")
            continue
        _create_topic(bootstrap, f"bench-codec-{name}")
        _progress(f"codec {name}")
        rate = _bare(bootstrap, f"bench-codec-{name}", events, name)
        size = len(_compress(name, batch))
        print(f"  {name:<7} {rate:>8,.0f} events/s  batch {size / len(batch):.2f} of its size")


def _compress(name: str, payload: bytes) -> bytes:
    if name == "none":
        return payload
    encode: Callable[[bytes], bytes] = getattr(kafka_codec, f"{name}_encode")
    return encode(payload)


# --- Parsing --------------------------------------------------------------------------------


def _report_parsing(messages: Sequence[bytes]) -> None:
    taxonomies = load_policy_set(REPO_POLICIES).taxonomies
    now = datetime.now(UTC)
    lines: dict[str, Callable[[bytes], object]] = {
        "json.loads (yardstick)": json.loads,
        "parse_structure": parse_structure,
        "parse_event": lambda raw: parse_event(raw, taxonomies, now),
    }
    rates = {name: _rate(parse, messages) for name, parse in lines.items()}
    yardstick = rates["json.loads (yardstick)"]
    print(f"parsing, in-process, {len(messages)} demo messages:")
    for name, rate in rates.items():
        print(f"  {name:<24} {rate:>8,.0f} events/s  / json.loads: {rate / yardstick:.2f}")


def _rate(parse: Callable[[bytes], object], messages: Sequence[bytes]) -> float:
    best = 0.0
    for _ in range(3):  # the best of three: the machine is shared
        started = time.perf_counter()
        for raw in messages:
            parse(raw)
        best = max(best, len(messages) / (time.perf_counter() - started))
    return best


# --- Helpers --------------------------------------------------------------------------------


def _create_topic(bootstrap: str, topic: str) -> None:
    with KafkaAdminClient(bootstrap_servers=bootstrap, client_id="privtrail-bench") as admin:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])


def _settings_text() -> str:
    shown = ("acks", "linger_ms", "batch_size", "compression_type")
    return ", ".join(f"{name}={PRODUCER_DEFAULTS.get(name)}" for name in shown)


def _mean_size(events: Sequence[DemoEvent]) -> float:
    return sum(len(e.value) for e in events) / len(events)


def _progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


if __name__ == "__main__":
    main()
