"""One event's cost in the emitter SDK by stage, in µs of CPU, for the typed helpers and emit(dict).

    .venv/bin/python bench/emitter_stages.py --events 20000

Each stage is timed alone over the demo workload (`privtrail/demo/`, valid events only), CPU
time, the best of `--rounds`: building the event, its id and time, encoding, validation, the
key, the SDK's own send against a producer that does nothing, and the whole call against that
producer. Then, on an embedded Apache Kafka broker, kafka-python's share: `KafkaProducer.send`
(CPU of the calling thread) and its I/O thread (the process's CPU but the caller's, send to the
last acknowledgement). The whole call also holds what the stages leave out (Python calls, the
helper's own dict, garbage collection).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from emitter import HEADERS, dict_call, helper_call, new_topic
from kafka import KafkaProducer

from events.emitter import PRODUCER_DEFAULTS, Emitter
from events.event_ids import new_event_id
from events.limits import DEFAULT_MAX_AHEAD
from events.models import PrivacyEvent
from events.new_events import encode_dict_event, present
from events.validation import check_encoded_shape, check_time, validate_data_json, validate_json
from privtrail.brokers import embedded_broker
from privtrail.brokers.apache_kafka import free_port
from privtrail.demo import DemoEvent, default_start, demo_events

SEED = 7
BROKER_START_SECONDS = 180.0
Item = TypeVar("Item")


class _Sent:
    def add_errback(self, f: Callable[..., Any], *args: Any) -> _Sent:
        return self


class _NoProducer:
    """Takes every send and does nothing: the SDK's cost alone."""

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None) -> _Sent:
        return _Sent()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    demo = list(demo_events(SEED, args.events, default_start(), malformed_share=0))
    events = [e.event for e in demo if e.event is not None]
    print(f"{len(events)} demo events, µs of CPU per event (best of {args.rounds}):")
    _report(_helper_stages(events, args.rounds) | _dict_stages(events, args.rounds))
    print("kafka-python on an embedded broker (127.0.0.1, no compression):")
    _report(_kafka_stages(demo))


def _helper_stages(events: Sequence[PrivacyEvent], rounds: int) -> dict[str, float]:
    emitter = Emitter("127.0.0.1:9", source="/bench/emitter", producer=_NoProducer())
    wires = [_helper_wire(e) for e in events]
    data = [(e.type, w["data"]) for e, w in zip(events, wires, strict=True)]
    data_json = [orjson.dumps(d) for _, d in data]
    encoded = [(t, d) for (t, _), d in zip(data, data_json, strict=True)]
    now = datetime.now(UTC)
    calls = [helper_call(emitter, e) for e in events]
    return {
        "helpers: new id": _cpu(lambda _: new_event_id(), events, rounds),
        "helpers: time now": _cpu(lambda _: datetime.now(UTC), events, rounds),
        "helpers: nulls left out": _cpu(present, [w["data"] for w in wires], rounds),
        "helpers: encode data (orjson)": _cpu(orjson.dumps, [d for _, d in data], rounds),
        "helpers: validate data (pydantic-core)": _cpu(
            lambda pair: validate_data_json(*pair), encoded, rounds
        ),
        "helpers: encode envelope (orjson)": _cpu(
            lambda w: orjson.dumps(w, option=orjson.OPT_UTC_Z),
            [
                {**w, "time": now, "data": orjson.Fragment(d)}
                for w, d in zip(wires, data_json, strict=True)
            ],
            rounds,
        ),
        "helpers: SDK send (no producer)": _cpu(
            lambda w: emitter._send(b"key", w, label="id"), [b"{}"] * len(events), rounds
        ),
        "helpers: whole call (no producer)": _cpu(lambda call: call(), calls, rounds),
    }


def _dict_stages(events: Sequence[PrivacyEvent], rounds: int) -> dict[str, float]:
    emitter = Emitter("127.0.0.1:9", source="/bench/emitter", producer=_NoProducer())
    dicts = [orjson.loads(e.model_dump_json(exclude_none=True)) for e in events]
    values = [orjson.dumps(d) for d in dicts]
    models = [validate_json(v) for v in values]
    now = datetime.now(UTC)
    calls = [dict_call(emitter, e) for e in events]
    return {
        "emit(dict): encode (orjson)": _cpu(orjson.dumps, dicts, rounds),
        "emit(dict): size and nesting": _cpu(check_encoded_shape, values, rounds),
        "emit(dict): validate (pydantic-core)": _cpu(validate_json, values, rounds),
        "emit(dict): time window": _cpu(
            lambda m: check_time(m, now, DEFAULT_MAX_AHEAD), models, rounds
        ),
        "emit(dict): key": _cpu(
            lambda m: m.data.subject.id.get_secret_value().encode(), models, rounds
        ),
        "emit(dict): encode and validate": _cpu(encode_dict_event, dicts, rounds),
        "emit(dict): whole call (no producer)": _cpu(lambda call: call(), calls, rounds),
    }


def _helper_wire(event: PrivacyEvent) -> dict[str, Any]:
    wire: dict[str, Any] = orjson.loads(event.model_dump_json(exclude_none=True))
    return wire


def _kafka_stages(demo: Sequence[DemoEvent]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="privtrail-bench-stages-") as root:
        broker = embedded_broker("kafka", free_port(), Path(root) / "broker")
        broker.start(timeout=BROKER_START_SECONDS)
        try:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, **PRODUCER_DEFAULTS)
            topic = new_topic(broker.bootstrap)
            producer.send(topic, b"warm-up").get(timeout=60)
            thread, process = time.thread_time(), time.process_time()
            for event in demo:
                producer.send(topic, value=event.value, key=event.key, headers=list(HEADERS))
            sending = time.thread_time() - thread
            producer.flush()
            other_threads = time.process_time() - process - (time.thread_time() - thread)
            producer.close()
        finally:
            broker.stop()
    return {
        "KafkaProducer.send (calling thread)": sending / len(demo) * 1e6,
        "kafka-python I/O thread": other_threads / len(demo) * 1e6,
    }


def _cpu(stage: Callable[[Item], object], items: Iterable[Item], rounds: int) -> float:
    listed = list(items)
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for item in listed:
            stage(item)
        best = min(best, time.process_time() - started)
    return best / len(listed) * 1e6


def _report(stages: dict[str, float]) -> None:
    for name, micros in stages.items():
        print(f"  {name:<42} {micros:6.1f}")


if __name__ == "__main__":
    main()
