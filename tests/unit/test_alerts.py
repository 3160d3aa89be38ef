from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from events.outputs import Violation
from sinks.alerts import AlertSink, WebhookAlertSink, create_alert_sink
from sinks.alerts import base as alerts_base
from tests.unit.chdb_store import violation

URL = "https://hooks.example.com/services/SECRET-TOKEN"

Handler = Callable[[httpx.Request], httpx.Response]


def webhook(tmp_path: Path, handler: Handler, **options: object) -> WebhookAlertSink:
    return WebhookAlertSink(
        URL,
        tmp_path / "alerts.deadletter.jsonl",
        backoff=0.01,
        transport=httpx.MockTransport(handler),
        **options,  # type: ignore[arg-type]
    )


def dead_letters(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "alerts.deadletter.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def ids_in(line: dict[str, object]) -> list[str]:
    violations = line["violations"]
    assert isinstance(violations, list)
    return [v["violation_id"] for v in violations]


def test_a_batch_is_posted_as_json(tmp_path: Path) -> None:
    bodies: list[dict[str, list[dict[str, str]]]] = []

    def accept(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(204)

    sink = webhook(tmp_path, accept)
    sink.send([violation("v1"), violation("v2")])
    sink.close()

    assert [[v["violation_id"] for v in body["violations"]] for body in bodies] == [["v1", "v2"]]
    assert bodies[0]["violations"][0]["rule_id"] == "LX-ADNET-001"
    assert dead_letters(tmp_path) == []


def test_a_failing_endpoint_is_retried(tmp_path: Path) -> None:
    answers = [503, 500, 200]
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(answers[len(calls) - 1])

    sink = webhook(tmp_path, flaky, attempts=3)
    sink.send([violation("v1")])
    sink.close()

    assert len(calls) == 3
    assert dead_letters(tmp_path) == []


def test_a_batch_that_never_gets_through_goes_to_the_dead_letter_file(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    sink = webhook(tmp_path, refuse, attempts=2)
    sink.send([violation("v1")])
    sink.close()

    [line] = dead_letters(tmp_path)
    assert ids_in(line) == ["v1"]
    assert line["error"] == "ConnectError: cannot reach <webhook>"
    assert "SECRET-TOKEN" not in (tmp_path / "alerts.deadletter.jsonl").read_text()


def test_an_http_error_status_is_named_in_the_dead_letter(tmp_path: Path) -> None:
    sink = webhook(tmp_path, lambda request: httpx.Response(404), attempts=1)
    sink.send([violation("v1")])
    sink.close()

    assert dead_letters(tmp_path)[0]["error"] == "webhook answered HTTP 404"


def test_batches_beyond_the_queue_are_set_aside_not_dropped(tmp_path: Path) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        release.wait(10)
        return httpx.Response(200)

    sink = webhook(tmp_path, slow, queue_size=1)
    sink.send([violation("in-flight")])
    assert started.wait(10)
    sink.send([violation("queued")])
    sink.send([violation("overflow")])
    release.set()
    sink.close()

    [line] = dead_letters(tmp_path)
    assert ids_in(line) == ["overflow"]
    assert line["error"] == "alert queue full: the webhook is not keeping up"


def test_closing_with_a_dead_endpoint_sets_aside_the_queue_at_once(tmp_path: Path) -> None:
    calls: list[int] = []
    started = threading.Event()
    release = threading.Event()

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        started.set()
        release.wait(10)
        return httpx.Response(502)

    sink = webhook(tmp_path, down, attempts=1)
    sink.send([violation("a")])
    assert started.wait(10)
    sink.send([violation("b")])
    sink.send([violation("c")])
    closing = threading.Thread(target=sink.close)
    closing.start()
    assert sink._closing.wait(10)  # the endpoint fails only once shutdown has begun
    release.set()
    closing.join(10)

    assert [ids_in(line) for line in dead_letters(tmp_path)] == [["a"], ["b"], ["c"]]
    assert len(calls) == 1


def test_no_sink_without_configuration(tmp_path: Path) -> None:
    assert create_alert_sink(Settings(data_dir=tmp_path)) is None


def test_a_webhook_url_configures_a_webhook_sink(tmp_path: Path) -> None:
    sink = create_alert_sink(Settings(data_dir=tmp_path, webhook_url=URL))
    assert isinstance(sink, WebhookAlertSink)
    sink.close()

    assert sink.url == URL
    assert sink.deadletter_path == tmp_path / "alerts.deadletter.jsonl"


class Recording(AlertSink):
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[list[str]] = []
        self.closed = False

    def send(self, violations: Sequence[Violation]) -> None:
        if self.fail:
            raise RuntimeError("sink down")
        self.sent.append([v.violation_id for v in violations])

    def close(self) -> None:
        self.closed = True


def test_several_configured_kinds_each_get_every_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, working = Recording(fail=True), Recording()
    monkeypatch.setattr(
        alerts_base, "_FACTORIES", {"broken": lambda s: broken, "working": lambda s: working}
    )
    sink = create_alert_sink(Settings(data_dir=tmp_path))
    assert sink is not None

    with pytest.raises(ExceptionGroup, match="alert sinks failed"):
        sink.send([violation("v1")])
    sink.close()

    assert working.sent == [["v1"]]
    assert broken.closed and working.closed


def test_a_kind_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="'webhook' is already registered"):
        alerts_base.register_alert_sink("webhook")(lambda settings: None)
