"""What `privtrail up` prints about a run: the demo's progress and the closing summary."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from privtrail import cli
from privtrail.schemas import RuleCount, Stats
from privtrail.summary import summary_lines


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
    monkeypatch.setattr(cli, "console", Console(file=out, width=100))
    emitter = RecordingEmitter()
    run = cli._Run(started=0.0, before="not asked")

    cli._send_demo_with_progress(emitter, 300, 7, run)  # type: ignore[arg-type]

    assert len(emitter.sent) == 300
    assert run.sent == 300
    assert "300/300" in out.getvalue()


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
