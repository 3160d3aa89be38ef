"""The demo workload: deterministic, valid, time-coherent, and breaking every policy clause."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from kafka.future import Future

from events.emitter import Emitter
from events.models import AccountChangedEvent, PrivacyEvent, RequestOpenedEvent
from events.taxonomy import Taxonomy
from events.validation import InvalidEvent, parse_event
from privtrail.demo import (
    DEFECTS,
    DEMO_SPAN,
    FULL_COVERAGE_COUNT,
    RECENT,
    TOUR_SUBJECT,
    DemoEvent,
    LiveDemo,
    default_start,
    demo_events,
    scenario_catalog,
    send_demo,
)
from streams.rules import SubjectFinding, judge_history, load_policy_set
from tests.contract import clause_extensions, clause_rule_ids

REPO = Path(__file__).resolve().parents[2]
START = datetime(2023, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ORGS = ("linkxup", "xpertaize", "connectx")
DEFECT_FIELDS = {
    "bad JSON": "",
    "unknown event type": "type",
    "unknown taxonomy key": "data.data_categories[0]",
    "wrong field type": "data.data_categories",
    "missing attribute": "time",
}


class RecordingProducer:
    """Keeps what is sent; every send succeeds."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes | None]] = []
        self.flushes = 0

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Future:
        self.sent.append((key, value))
        return Future().success(None)

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1

    def close(self, timeout: float | None = None) -> None:
        pass


def org_taxonomies() -> dict[str, Taxonomy]:
    """The fideslang default plus the org extensions listed at the end of policy-clauses.md."""
    extensions = clause_extensions()
    categories = {key: parent for key, parent in extensions.items() if key.startswith("user.")}
    uses = {key: parent for key, parent in extensions.items() if not key.startswith("user.")}
    taxonomy = Taxonomy.default().extend(data_categories=categories, data_uses=uses)
    return dict.fromkeys(ORGS, taxonomy)


@pytest.fixture(scope="module")
def taxonomies() -> Mapping[str, Taxonomy]:
    return org_taxonomies()


@pytest.fixture(scope="module")
def run() -> list[DemoEvent]:
    return list(demo_events(42, FULL_COVERAGE_COUNT, START))


def subject_of(event: DemoEvent) -> tuple[str, str]:
    assert event.event is not None
    data = event.event.data
    return data.org, data.subject.id.get_secret_value()


def test_the_same_seed_gives_the_same_messages() -> None:
    first = [(e.key, e.value) for e in demo_events(7, 500, START)]
    again = [(e.key, e.value) for e in demo_events(7, 500, START)]
    other = [(e.key, e.value) for e in demo_events(8, 500, START)]

    assert first == again
    assert first != other


def test_a_run_has_exactly_count_messages_in_event_time_order(run: list[DemoEvent]) -> None:
    times = [e.time for e in run]

    assert len(run) == FULL_COVERAGE_COUNT
    assert times == sorted(times)
    assert times[0] >= START and times[-1] <= START + DEMO_SPAN
    # The last message is close to the end, so every deadline inside the span has passed.
    assert times[-1] >= START + DEMO_SPAN - timedelta(days=1)


def test_every_valid_message_passes_the_workers_validation(
    run: list[DemoEvent], taxonomies: Mapping[str, Taxonomy]
) -> None:
    valid = [e for e in run if e.defect is None]

    assert len(valid) > 0.99 * len(run)
    for demo_event in valid:
        parsed = parse_event(demo_event.value, taxonomies)
        assert parsed == demo_event.event
        assert demo_event.key == parsed.data.subject.id.get_secret_value().encode()
        assert parsed.time == demo_event.time
        assert parsed.source.startswith(f"/{parsed.data.org}/")


def test_about_half_a_percent_is_malformed_with_every_defect(
    run: list[DemoEvent], taxonomies: Mapping[str, Taxonomy]
) -> None:
    malformed = [e for e in run if e.defect is not None]

    assert len(malformed) == round(0.005 * len(run))
    assert {e.defect for e in malformed} == set(DEFECTS)
    for demo_event in malformed:
        assert demo_event.event is None
        with pytest.raises(InvalidEvent) as error:
            parse_event(demo_event.value, taxonomies)
        assert error.value.field == DEFECT_FIELDS[str(demo_event.defect)]


def test_each_subjects_events_are_in_strict_time_order(run: list[DemoEvent]) -> None:
    times: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for demo_event in run:
        if demo_event.event is not None:
            times[subject_of(demo_event)].append(demo_event.time)

    assert len(times) > 50
    for subject_times in times.values():
        assert all(a < b for a, b in pairwise(subject_times))


def test_the_catalog_covers_every_rule_of_the_policy_clauses() -> None:
    targeted = {rule for s in scenario_catalog() for rule in s.violates}

    assert targeted == set(clause_rule_ids())


def test_a_run_of_full_coverage_size_tells_every_violating_scenario(run: list[DemoEvent]) -> None:
    told = {e.scenario for e in run}
    violating = {s.name for s in scenario_catalog() if s.violates}

    assert violating <= told


def event_ids(run: list[DemoEvent]) -> set[str]:
    return {e.event.id for e in run if e.event is not None}


def subjects(run: list[DemoEvent]) -> set[tuple[str, str]]:
    return {subject_of(e) for e in run if e.event is not None}


def test_another_salt_tells_the_same_stories_under_new_ids() -> None:
    first = list(demo_events(7, 500, START, salt="run-1"))
    again = list(demo_events(7, 500, START, salt="run-1"))
    other = list(demo_events(7, 500, START, salt="run-2"))

    assert [(e.key, e.value) for e in first] == [(e.key, e.value) for e in again]
    assert [(e.scenario, e.time, e.defect) for e in other] == [
        (e.scenario, e.time, e.defect) for e in first
    ]
    assert not event_ids(first) & event_ids(other)
    # Only the README tour's subject is the same in every run.
    assert subjects(first) & subjects(other) == {("xpertaize", TOUR_SUBJECT)}


def test_traffic_is_mostly_compliant_at_the_configured_share() -> None:
    violating = {s.name for s in scenario_catalog() if s.violates}
    messages = list(demo_events(3, 8000, START, violation_share=0.03))
    share = sum(e.scenario in violating for e in messages) / len(messages)

    assert 0.03 <= share < 0.05


def stories(run: list[DemoEvent], scenario: str) -> list[list[PrivacyEvent]]:
    by_subject: dict[tuple[str, str], list[PrivacyEvent]] = defaultdict(list)
    for demo_event in run:
        if demo_event.scenario == scenario and demo_event.event is not None:
            by_subject[subject_of(demo_event)].append(demo_event.event)
    assert by_subject, f"no story of {scenario}"
    return list(by_subject.values())


def test_deadline_stories_cross_their_deadline_within_the_run(run: list[DemoEvent]) -> None:
    """Closures, erasure requests and the stale profile are far enough from the run's end."""
    end = run[-1].time
    for story in stories(run, "lx-closed-not-deleted"):
        [closed] = [
            e for e in story if isinstance(e, AccountChangedEvent) and e.data.status == "closed"
        ]
        assert closed.time + timedelta(days=30) < end
    for story in stories(run, "xa-erasure-ignored"):
        [opened] = [
            e for e in story if isinstance(e, RequestOpenedEvent) and e.data.right == "erasure"
        ]
        assert opened.time + timedelta(days=30) < end
    for story in stories(run, "xa-stale-profile"):
        last_activity = max(e.time for e in story if isinstance(e, AccountChangedEvent))
        assert last_activity + timedelta(days=3 * 366) < end


def test_compliant_xpertaize_subjects_stay_within_the_retention_window(
    run: list[DemoEvent],
) -> None:
    end = run[-1].time
    violating = {s.name for s in scenario_catalog() if s.violates}
    for demo_event in run:
        event = demo_event.event
        if (
            isinstance(event, AccountChangedEvent)
            and event.data.org == "xpertaize"
            and demo_event.scenario not in violating
        ):
            assert event.time + timedelta(days=3 * 365) > end


def unexpected_findings(run: list[DemoEvent], now: datetime | None) -> tuple[set[str], list[str]]:
    """Judge a run in-process: the rules that fired, and findings no scenario meant to cause."""
    policy = load_policy_set(REPO / "policies")
    valid = [e for e in run if e.event is not None]
    for demo_event in valid:
        assert parse_event(demo_event.value, policy.taxonomies) == demo_event.event
    findings = judge_history(policy, [e.event for e in valid if e.event is not None], now)
    targets = {s.name: set(s.violates) for s in scenario_catalog()}
    scenario_of = {subject_of(e): e.scenario for e in valid}
    unexpected = []
    for found in findings:
        scenario = scenario_of[found.org, found.subject.id.get_secret_value()]
        if found.finding.rule.rule_id not in targets[scenario]:
            unexpected.append(
                f"{scenario}: {found.finding.rule.rule_id} {found.finding.explanation}"
            )
    return {f.finding.rule.rule_id for f in findings}, unexpected


def test_judging_the_demo_fires_every_rule_and_only_where_meant(run: list[DemoEvent]) -> None:
    fired, unexpected = unexpected_findings(run, None)

    assert fired == set(clause_rule_ids())
    assert unexpected == []


@pytest.fixture(scope="module")
def ending_now() -> list[DemoEvent]:
    return list(demo_events(11, FULL_COVERAGE_COUNT, default_start(NOW)))


def test_a_demo_ending_now_stays_coherent_with_the_wall_clock(
    ending_now: list[DemoEvent],
) -> None:
    """Once caught up the pipeline judges deadlines at the wall clock; nothing extra fires."""
    fired, unexpected = unexpected_findings(ending_now, NOW + timedelta(hours=1))

    assert fired == set(clause_rule_ids())
    assert unexpected == []


def judged_now(run: list[DemoEvent]) -> list[SubjectFinding]:
    policy = load_policy_set(REPO / "policies")
    return judge_history(policy, [e.event for e in run if e.event is not None], NOW)


def test_the_newest_history_is_recent_and_breaks_rules(ending_now: list[DemoEvent]) -> None:
    """What `violations --since 2h` and `replay --since 1d` ask about right after a demo."""
    times = [e.time for e in ending_now]
    recent = [f for f in judged_now(ending_now) if f.occurred_at >= NOW - 2 * RECENT]

    assert max(times) <= NOW
    assert sum(t >= NOW - timedelta(days=1) for t in times) >= 0.01 * len(times)
    assert len({f.finding.rule.rule_id for f in recent}) >= 2


def test_the_tour_subject_breaks_xa_emp_001_within_the_last_hour_in_every_run() -> None:
    for salt in ("run-1", "run-2"):
        run = list(demo_events(3, 500, default_start(NOW), salt=salt))
        tour = [
            e for e in run if e.event is not None and subject_of(e) == ("xpertaize", TOUR_SUBJECT)
        ]
        found = [f for f in judged_now(run) if f.subject.id.get_secret_value() == TOUR_SUBJECT]

        assert [e.event.type for e in tour if e.event is not None][-1] == "privacy.data.shared"
        assert [f.finding.rule.rule_id for f in found] == ["XA-EMP-001"]
        assert NOW - RECENT <= found[0].occurred_at <= NOW


def test_a_live_demo_notes_the_latest_violating_subject_of_each_org() -> None:
    demo = LiveDemo(7, FULL_COVERAGE_COUNT, NOW)
    run = list(demo)
    rules = {s.name: s.violates for s in scenario_catalog() if s.violates}
    violating = [e for e in run if e.event is not None and e.scenario in rules]

    assert sorted(demo.subjects) == sorted(ORGS)
    for org, noted in demo.subjects.items():
        latest = [e for e in violating if subject_of(e)[0] == org][-1]
        assert subject_of(latest) == (org, noted.subject_id)
        assert noted.rules == rules[latest.scenario]
    again = LiveDemo(7, FULL_COVERAGE_COUNT, NOW)
    assert again.salt != demo.salt
    assert not event_ids(run) & event_ids(list(again))


def test_default_start_ends_the_history_at_now() -> None:
    messages = list(demo_events(1, 300, default_start(NOW)))

    assert NOW - timedelta(seconds=5) <= messages[-1].time <= NOW


def test_send_demo_sends_every_message_verbatim_and_flushes() -> None:
    producer = RecordingProducer()
    emitter = Emitter("127.0.0.1:9", source="/demo", producer=producer)
    messages = list(demo_events(5, 400, START))
    progress: list[int] = []

    assert send_demo(emitter, messages, progress.append) == 400

    assert producer.sent == [(m.key, m.value) for m in messages]
    assert progress == list(range(1, 401))
    assert producer.flushes == 1


@pytest.mark.parametrize(
    ("count", "start", "message"),
    [
        (0, START, "count must be at least 1"),
        (10, datetime(2023, 1, 1), "timezone-aware"),
    ],
)
def test_bad_arguments_are_refused(count: int, start: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        demo_events(1, count, start)
