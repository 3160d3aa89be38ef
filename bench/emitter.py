"""The emitter SDK against a bare kafka-python producer, and parsing against bare `json.loads`.

    .venv/bin/python bench/emitter.py --events 30000

One run, on 127.0.0.1 in a temporary directory: an embedded Apache Kafka broker, a new topic
(4 partitions) for every measurement. The workload is N demo events (`privtrail/demo/`, valid
only, about 430 bytes each). Every line is measured once per round, the lines in turn:

- bare producer (yardstick): kafka-python with the SDK's producer settings sends the events'
  pre-encoded bytes and keys, then flushes;
- SDK helpers: the same events through the typed helpers (`data_accessed`, `shared`, ...),
  each validated, encoded and sent, then `flush()`;
- SDK emit(dict): the same events as CloudEvent dicts through `Emitter.emit`.

Each figure is events/s from the first send until the broker acknowledged the last, the median
over the rounds; the ratio is the median of each round's ratio to the first line of its table,
the yardstick. Then every compression codec kafka-python has here, on the bare producer
(events/s, and how small a batch of demo values gets), and, without a broker, `parse_event` and
`parse_structure` against bare `json.loads` of the same messages.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from figures import add_json_option, write_figures
from kafka import KafkaProducer
from kafka import codec as kafka_codec
from kafka.admin import KafkaAdminClient, NewTopic

from config.settings import REPO_POLICIES
from events.emitter import PRODUCER_DEFAULTS, Emitter
from events.models import EventType, PrivacyEvent
from events.producer import REMOTE_COMPRESSION, is_loopback
from events.validation import parse_event, parse_structure
from privtrail.brokers import embedded_broker
from privtrail.brokers.apache_kafka import free_port
from privtrail.demo import DemoEvent, default_start, demo_events
from streams.rules.policy import load_policy_set

SEED = 7
PARTITIONS = 4
# Kafka takes far longer than its usual few seconds to start on a busy 2-core machine.
BROKER_START_SECONDS = 180.0
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    add_json_option(parser)
    args = parser.parse_args()
    events = [e for e in demo_events(SEED, args.events, default_start(), malformed_share=0)]
    with tempfile.TemporaryDirectory(prefix="privtrail-bench-emitter-") as root:
        broker = embedded_broker("kafka", free_port(), Path(root) / "broker")
        _progress("starting the kafka broker")
        broker.start(timeout=BROKER_START_SECONDS)
        try:
            print(f"workload: {len(events)} demo events, {_mean_size(events):.0f} B each")
            sends = _report_sends(broker.bootstrap, events, args.rounds)
            _report_codecs(broker.bootstrap, events, args.rounds)
        finally:
            broker.stop()
    _report_parsing([e.value for e in events], args.rounds)
    write_figures(args.json, {"events": len(events), "sending": _medians(sends)})


# --- Sending --------------------------------------------------------------------------------


def _report_sends(
    bootstrap: str, events: Sequence[DemoEvent], rounds: int
) -> dict[str, list[float]]:
    # The codec the SDK picks for this broker address.
    codec = "none" if is_loopback(bootstrap) else REMOTE_COMPRESSION
    lines: dict[str, Callable[[], float]] = {
        "bare kafka-python producer (yardstick)": lambda: _bare(bootstrap, events, codec),
        "SDK typed helpers": lambda: _sdk(bootstrap, events, helper_call),
        "SDK emit(dict)": lambda: _sdk(bootstrap, events, dict_call),
    }
    print(f"sending ({_settings_text()}, compression {codec}) until acknowledged:")
    rates = _in_rounds(lines, rounds)
    _print_rounds(rates, unit="events/s")
    return rates


def _in_rounds(lines: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each line once per round, in turn: a load that comes and goes on the shared machine
    then weighs on every line alike."""
    rates: dict[str, list[float]] = {name: [] for name in lines}
    for number in range(rounds):
        for name, measure in lines.items():
            _progress(f"round {number + 1}/{rounds}: {name}")
            rates[name].append(measure())
    return rates


def _print_rounds(rates: dict[str, list[float]], unit: str) -> None:
    """Each line's median, its rounds, and the median of its ratios to the first line (the
    yardstick) in the same round."""
    for name, measured in rates.items():
        print(
            f"  {name:<40} {statistics.median(measured):>8,.0f} {unit}"
            f"  (rounds: {', '.join(f'{r:,.0f}' for r in measured)})"
            f"  ratio {_median_ratio(rates, name):.2f}"
        )


def _median_ratio(rates: dict[str, list[float]], name: str) -> float:
    """The median of the line's ratios to the first line (the yardstick) in the same round."""
    yardstick = next(iter(rates.values()))
    ratios = [rate / bare for rate, bare in zip(rates[name], yardstick, strict=True)]
    return statistics.median(ratios)


def _medians(rates: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Each line's median rate and median ratio to the yardstick, as `--json` writes them."""
    return {
        name: {"rate": statistics.median(measured), "ratio": _median_ratio(rates, name)}
        for name, measured in rates.items()
    }


def _bare(bootstrap: str, events: Sequence[DemoEvent], compression: str) -> float:
    topic = new_topic(bootstrap)
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
    events: Sequence[DemoEvent],
    prepare: Callable[[Emitter, PrivacyEvent], Callable[[], object]],
) -> float:
    topic = new_topic(bootstrap)
    with Emitter(bootstrap, source="/bench/emitter", topic=topic) as emitter:
        # Calls are prepared before the clock starts: the figure is the SDK's work only.
        calls = [prepare(emitter, e.event) for e in events if e.event is not None]
        emitter.send_raw(b"warm-up", b"{}")
        emitter.flush()
        started = time.perf_counter()
        for call in calls:
            call()
        emitter.flush()
        return len(calls) / (time.perf_counter() - started)


def helper_call(emitter: Emitter, event: PrivacyEvent) -> Callable[[], object]:
    """The typed helper call that reports `event`'s data, its id and time left to default as
    a service would leave them."""
    data = json.loads(event.data.model_dump_json(exclude_none=True))
    arguments: dict[str, Any] = {}
    for name, value in data.items():
        if name in FLATTENED:
            arguments.update({FLATTENED[name] + key: item for key, item in value.items()})
        elif name in ("transfer", "settings"):
            arguments.update(value)
        else:
            arguments[name] = value
    return functools.partial(getattr(emitter, HELPERS[event.type]), **arguments)


def dict_call(emitter: Emitter, event: PrivacyEvent) -> Callable[[], object]:
    return functools.partial(emitter.emit, json.loads(event.model_dump_json(exclude_none=True)))


# --- Compression ----------------------------------------------------------------------------


def _report_codecs(bootstrap: str, events: Sequence[DemoEvent], rounds: int) -> None:
    available = [name for name, installed in CODECS.items() if installed()]
    lines: dict[str, Callable[[], float]] = {
        name: functools.partial(_bare, bootstrap, events, name) for name in available
    }
    print(f"compression on the bare producer (not installed: {_missing_codecs(available)}):")
    _print_rounds(_in_rounds(lines, rounds), unit="events/s")
    batch = b"".join(e.value for e in events)[: PRODUCER_DEFAULTS["batch_size"]]
    sizes = ", ".join(f"{n} {len(_compress(n, batch)) / len(batch):.2f}" for n in available)
    print(f"  a {len(batch) // 1024} KiB batch of demo values compressed to: {sizes}")


def _missing_codecs(available: Sequence[str]) -> str:
    return ", ".join(name for name in CODECS if name not in available) or "none"


def _compress(name: str, payload: bytes) -> bytes:
    if name == "none":
        return payload
    encode: Callable[[bytes], bytes] = getattr(kafka_codec, f"{name}_encode")
    return encode(payload)


# --- Parsing --------------------------------------------------------------------------------


def _report_parsing(messages: Sequence[bytes], rounds: int) -> None:
    taxonomies = load_policy_set(REPO_POLICIES).taxonomies
    now = datetime.now(UTC)
    parsers: dict[str, Callable[[bytes], object]] = {
        "json.loads (yardstick)": json.loads,
        "parse_structure": parse_structure,
        "parse_event": lambda raw: parse_event(raw, taxonomies, now),
    }
    lines = {
        name: functools.partial(_parse_rate, parse, messages) for name, parse in parsers.items()
    }
    print(f"parsing {len(messages)} demo messages in-process:")
    _print_rounds(_in_rounds(lines, rounds), unit="events/s")


def _parse_rate(parse: Callable[[bytes], object], messages: Sequence[bytes]) -> float:
    started = time.perf_counter()
    for raw in messages:
        parse(raw)
    return len(messages) / (time.perf_counter() - started)


# --- Helpers --------------------------------------------------------------------------------


def new_topic(bootstrap: str) -> str:
    """A new topic per measurement, so none writes behind another's data."""
    topic = f"bench-{uuid.uuid4().hex[:12]}"
    with KafkaAdminClient(bootstrap_servers=bootstrap, client_id="privtrail-bench") as admin:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    return topic


def _settings_text() -> str:
    shown = ("acks", "linger_ms", "batch_size")
    return ", ".join(f"{name}={PRODUCER_DEFAULTS.get(name)}" for name in shown)


def _mean_size(events: Sequence[DemoEvent]) -> float:
    return sum(len(e.value) for e in events) / len(events)


def _progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
