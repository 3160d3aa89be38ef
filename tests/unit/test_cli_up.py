"""What `privtrail up` prints about a run: the demo's progress and the closing summary."""

from __future__ import annotations

import io
import json
import shlex
import sys
from typing import Any

import pytest
from rich.console import Console

from privtrail.cli import up
from privtrail.demo import DemoSubject
from privtrail.schemas import RuleCount, Stats
from privtrail.summary import invocation, summary_lines


class RecordingEmitter:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        self.sent.append(value)

    def flush(self) -> None:
        pass


def stats(rejected: int, *rows: tuple[str, str, int]) -> Stats:
    by_rule = [RuleCount(org="connectx", rule_id=r, severity=s, count=n) for r, s, n in rows]
    return Stats(
        events=0,
        violations=sum(n for _, _, n in rows),
        lineage_edges=0,
        rejected_events=rejected,
        violations_by_rule=by_rule,
        violations_by_org={},
    )


def test_the_demo_progress_counts_each_event_once(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(up, "console", Console(file=out, width=100))
    emitter = RecordingEmitter()
    run = up._Run(started=0.0, before="not asked")

    up._send_demo_with_progress(emitter, 300, 7, run)  # type: ignore[arg-type]

    assert len(emitter.sent) == 300
    assert run.sent == 300
    assert "300/300" in out.getvalue()
    sent_subjects = {m["data"]["subject"]["id"] for m in map(_parsed, emitter.sent) if m}
    assert run.subjects, "the summary needs subjects of the run to suggest"
    assert {s.subject_id for s in run.subjects.values()} <= sent_subjects


def test_each_run_of_the_demo_sends_new_event_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "console", Console(file=io.StringIO()))
    runs = [RecordingEmitter(), RecordingEmitter()]
    for emitter in runs:
        up._send_demo_with_progress(emitter, 300, 7, up._Run(0.0, "not asked"))  # type: ignore[arg-type]

    first, second = ({m["id"] for m in map(_parsed, e.sent) if m} for e in runs)
    assert len(first) > 250
    assert not first & second


def _parsed(value: bytes) -> dict[str, Any] | None:
    try:
        message: dict[str, Any] = json.loads(value)
    except ValueError:
        return None  # the demo's input with bad JSON
    return message


def test_the_summary_counts_what_the_run_added_by_severity() -> None:
    before = stats(4, ("CX-ENC-004", "critical", 2), ("CX-MKT-002", "medium", 5))
    after = stats(
        9,
        ("CX-ENC-004", "critical", 3),
        ("CX-MKT-002", "medium", 5),
        ("CX-WA-ADS-001", "high", 2),
    )

    lines = summary_lines(300, 61.4, before, after)

    assert lines == [
        "privtrail ran for 0:01:01",
        "  demo events sent: 300",
        "  violations stored: 3 (critical 1, high 2)",
        "  rejected inputs stored: 5",
    ]


def test_the_summary_says_why_store_counts_are_missing() -> None:
    lines = summary_lines(0, 5.0, stats(0), "service not reachable")

    assert lines[-1] == "  stored violations and rejected inputs unknown: service not reachable"


def test_the_summary_suggests_commands_about_subjects_of_the_run() -> None:
    subjects = [
        DemoSubject("xpertaize", "xpa_1f2e", ("XA-EMP-001",)),
        DemoSubject("connectx", "cxc_9a0b", ("CX-ENC-004", "CX-PAY-007")),
    ]

    lines = summary_lines(300, 61.4, stats(0), stats(0), subjects, ".venv/bin/privtrail")

    assert lines[4:] == [
        "try next:",
        "  .venv/bin/privtrail violations --since 2h",
        "  .venv/bin/privtrail lineage xpa_1f2e --org xpertaize  # broke XA-EMP-001",
        "  .venv/bin/privtrail lineage cxc_9a0b --org connectx   # broke CX-ENC-004, CX-PAY-007",
    ]


def test_suggested_commands_run_privtrail_as_it_was_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [".venv/bin/privtrail", "up", "--demo"])
    assert invocation() == ".venv/bin/privtrail"
    monkeypatch.setattr(sys, "argv", ["/src/privtrail/__main__.py", "up", "--demo"])
    assert invocation() == f"{shlex.quote(sys.executable)} -m privtrail"
