"""`privtrail replay` end to end: demo history through the pipeline, re-judged by the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from events.emitter import Emitter
from events.models import PrivacyEvent
from events.outputs import Violation
from privtrail.demo import FULL_COVERAGE_COUNT, default_start, demo_events, send_demo
from privtrail.replay import LIVE_UNCHANGED
from streams.rules import PolicySet, judge_history, load_policy_set
from streams.rules.rejudge import ReplayedFinding, ReplayReport
from tests.e2e.conftest import Pipeline
from tests.e2e.keys import subjects_by_pseudonym
from tests.unit.test_replay import POLICY, REPO, candidate_policies

pytestmark = pytest.mark.e2e

Key = tuple[str, str, str | None, str | None]


def finding_keys(policy: PolicySet, events: list[PrivacyEvent]) -> dict[str, set[Key]]:
    """Per rule: (org, subject id, event id, deadline) of each finding on the original events."""
    now = max(event.time for event in events)
    found: dict[str, set[Key]] = {}
    for f in judge_history(policy, events, now):
        subject = f.subject.id.get_secret_value()
        deadline = f.finding.deadline.isoformat() if f.finding.deadline else None
        cause = f.event.id if f.event is not None else None
        found.setdefault(f.finding.rule.rule_id, set()).add((f.org, subject, cause, deadline))
    return found


def reported(findings: list[ReplayedFinding], subjects: dict[str, str]) -> set[Key]:
    """The replay's findings, by subject id (the worker keyed each subject at random)."""
    return {
        (
            f.org,
            subjects[f.subject_pseudonym],
            f.event_id,
            f.deadline.isoformat() if f.deadline else None,
        )
        for f in findings
    }


def live_violations(pipeline: Pipeline) -> list[Violation]:
    return sorted(pipeline.api.violations(limit=10_000), key=lambda v: v.violation_id)


def settled_violations(pipeline: Pipeline) -> list[Violation]:
    """The live violations once no more arrive (the worker is stopped, ingest may lag)."""
    seen: list[list[Violation]] = [live_violations(pipeline)]

    def settled() -> list[Violation] | None:
        seen.append(live_violations(pipeline))
        last = seen[-4:]
        return last[0] if len(last) == 4 and all(s == last[0] for s in last) else None

    return pipeline.wait_for(settled, "the live violations to settle", timeout=60)


@pytest.mark.timeout(420)
def test_replay_reports_exactly_what_a_candidate_policy_changes(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    settings = pipeline.settings
    demo = list(demo_events(3, FULL_COVERAGE_COUNT, default_start()))
    events = [d.event for d in demo if d.event is not None]
    with pipeline.worker():
        with Emitter(settings.bootstrap, source="/e2e", topic=settings.topics.events) as emitter:
            send_demo(emitter, demo)
        stored = len({e.id for e in events})
        pipeline.wait_for(
            lambda: pipeline.api.stats().events == stored, f"{stored} stored events", 240
        )
    before = settled_violations(pipeline)
    candidate_dir = candidate_policies(tmp_path / "candidate")

    run = subprocess.run(
        [sys.executable, "-m", "privtrail", "replay", "--policy", str(candidate_dir), "--json"],
        env=settings.as_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert run.returncode == 0, run.stderr
    assert " ".join(LIVE_UNCHANGED.split()) in " ".join(run.stderr.split())
    report = ReplayReport.model_validate_json(run.stdout)
    baseline = finding_keys(POLICY, events)
    candidate = finding_keys(load_policy_set(candidate_dir), events)
    subjects = subjects_by_pseudonym(
        settings, {(e.data.org, e.data.subject.id.get_secret_value()) for e in events}
    )
    assert report.events == stored
    assert report.baseline_version == POLICY.version
    changed = {r.rule_id: r for r in report.changed}
    assert sorted(changed) == ["LX-ADNET-001", "LX-CLOSE-008"]
    for rule_id, change in changed.items():
        was, now = baseline.get(rule_id, set()), candidate.get(rule_id, set())
        added, removed = reported(change.added, subjects), reported(change.removed, subjects)
        assert (added, removed) == (now - was, was - now)
    # The dropped rule takes away exactly the violations it produced live.
    dropped = changed["LX-ADNET-001"]
    assert dropped.removed and not dropped.added
    assert {(f.subject_pseudonym, f.event_id) for f in dropped.removed} == {
        (v.subject_pseudonym, v.event_id) for v in before if v.rule_id == "LX-ADNET-001"
    }
    assert changed["LX-CLOSE-008"].added, "a 10-day deadline must lapse where 30 days did not"

    assert live_violations(pipeline) == before, "replay must not change live results"
