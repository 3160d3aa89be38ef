"""Loading policy files into a PolicySet: taxonomies, version digest, judging, deadlines."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from events.models import EventType, PrivacyEvent
from events.validation import parse_event
from privtrail.demo import default_start, demo_events
from streams.rules import YamlPolicySet, judge_history, load_policy_set
from streams.state import SubjectState
from tests.conformance.compact import build_events

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def policy() -> YamlPolicySet:
    return load_policy_set(REPO_POLICIES)


def _events(policy: YamlPolicySet, org: str, *compact: dict[str, Any]) -> list[PrivacyEvent]:
    kind = policy.policies[org].subject_kinds[0]
    return build_events(list(compact), org, kind, policy.taxonomies, "t")


def test_loads_every_org_and_rule(policy: YamlPolicySet) -> None:
    assert set(policy.taxonomies) == {"linkxup", "xpertaize", "connectx"}
    by_org: dict[str, int] = {}
    for info in policy.rules:
        by_org[info.org] = by_org.get(info.org, 0) + 1
    assert by_org == {"linkxup": 12, "xpertaize": 9, "connectx": 7}


def test_org_extensions_belong_to_their_orgs(policy: YamlPolicySet) -> None:
    whatsapp = "user.content.private.whatsapp_message"
    categories = {org: t.data_categories for org, t in policy.taxonomies.items()}
    assert [org for org, keys in sorted(categories.items()) if whatsapp in keys] == ["connectx"]
    assert [org for org, keys in sorted(categories.items()) if "user.professional.cv" in keys] == [
        "linkxup",
        "xpertaize",
    ]
    uses = {org: t.data_uses for org, t in policy.taxonomies.items()}
    assert [org for org, keys in sorted(uses.items()) if "third_party_sharing.sale" in keys] == [
        "xpertaize"
    ]


def test_version_is_a_stable_digest_of_the_file_bytes(tmp_path: Path) -> None:
    first = load_policy_set(REPO_POLICIES).version
    assert len(first) == 12 and int(first, 16) >= 0
    copy = tmp_path / "copy"
    shutil.copytree(REPO_POLICIES, copy)
    assert load_policy_set(copy).version == first  # the digest ignores where the files live
    edited = copy / "connectx.yaml"
    edited.write_bytes(edited.read_bytes() + b"\n# reviewed\n")
    assert load_policy_set(copy).version != first


def test_version_takes_files_in_name_order(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yaml"):
        org = name[0] + "org"
        (tmp_path / name).write_text(f"org: {org}\nname: {org}\nsubject_kinds: [customer]\n")
    version = load_policy_set(tmp_path).version
    (tmp_path / "a.yaml").rename(tmp_path / "c.yaml")
    assert load_policy_set(tmp_path).version != version


def test_a_single_file_loads_alone() -> None:
    single = load_policy_set(REPO_POLICIES / "xpertaize.yaml")
    assert set(single.taxonomies) == {"xpertaize"}
    assert len(single.rules) == 9 and single.rules[0].rule_id == "XA-EMP-001"


def test_finding_explains_the_fact_and_quotes_the_policy(policy: YamlPolicySet) -> None:
    (event,) = _events(
        policy,
        "connectx",
        {
            "at": "2025-03-01T10:00:00Z",
            "type": "accessed",
            "actor": "service:ads",
            "categories": ["user.content.private.whatsapp_message"],
            "use": "marketing.advertising.third_party.targeted",
        },
    )
    state = SubjectState(org="connectx", subject_kind="customer")
    findings = {f.rule.rule_id: f for f in policy.judge(event, state)}
    assert set(findings) == {"CX-WA-ADS-001", "CX-MKT-002"}
    ads = findings["CX-WA-ADS-001"]
    assert ads.explanation == (
        "service ads accessed user.content.private.whatsapp_message for "
        'marketing.advertising.third_party.targeted; policy: "We do not use WhatsApp message '
        'content for advertising purposes." (ConnectX §4)'
    )
    assert (ads.rule.severity, ads.rule.section, ads.deadline) == ("critical", "4", None)
    assert "no consent recorded for marketing.advertising.third_party.targeted" in (
        findings["CX-MKT-002"].explanation
    )


def test_default_legal_basis_applies_only_without_one_on_the_event(
    policy: YamlPolicySet,
) -> None:
    withdrawn, defaulted, explicit = _events(
        policy,
        "linkxup",
        {
            "at": "2025-03-01T09:00:00Z",
            "type": "consent",
            "use": "marketing",
            "status": "withdrawn",
        },
        {
            "at": "2025-03-01T10:00:00Z",
            "type": "accessed",
            "categories": ["user.contact.email"],
            "use": "marketing.communications.email",
        },
        {
            "at": "2025-03-01T10:00:00Z",
            "type": "accessed",
            "categories": ["user.contact.email"],
            "use": "marketing.communications.email",
            "basis": "contract",
        },
    )
    state = SubjectState(org="linkxup", subject_kind="customer")
    state.apply(withdrawn)
    (finding,) = policy.judge(defaulted, state)
    assert finding.rule.rule_id == "LX-CONSENT-009"
    assert "legal basis consent (the policy's default for marketing.communications.email)" in (
        finding.explanation
    )
    assert policy.judge(explicit, state) == []


def test_deadline_findings_carry_deadline_and_cause(policy: YamlPolicySet) -> None:
    (closed,) = _events(
        policy,
        "linkxup",
        {"at": "2025-03-01T10:00:00+01:00", "type": "account", "status": "closed"},
    )
    state = SubjectState(org="linkxup", subject_kind="customer")
    state.apply(closed)
    deadline = datetime(2025, 3, 31, 9, tzinfo=UTC)
    assert policy.next_deadline(state) == deadline
    assert policy.due(state, deadline) == []  # due only once "now" is past the deadline
    (finding,) = policy.due(state, datetime(2025, 4, 1, tzinfo=UTC))
    assert (finding.rule.rule_id, finding.deadline, finding.cause_event_id) == (
        "LX-CLOSE-008",
        deadline,
        closed.id,
    )
    assert finding.explanation.startswith(
        "account closed at 2025-03-01T10:00:00+01:00; deadline 2025-03-31T09:00:00+00:00 "
        "(30 days later) passed with no erasure fulfilled and no legal hold; policy: "
    )
    state.mark_fired(finding.rule.rule_id, deadline)
    assert policy.due(state, datetime(2025, 5, 1, tzinfo=UTC)) == []
    assert policy.next_deadline(state) is None


def test_legal_hold_suspends_the_pending_deadline(policy: YamlPolicySet) -> None:
    closed, hold = _events(
        policy,
        "linkxup",
        {"at": "2025-03-01T10:00:00Z", "type": "account", "status": "closed"},
        {"at": "2025-03-02T10:00:00Z", "type": "legal_hold", "status": "placed", "reason": "x"},
    )
    state = SubjectState(org="linkxup", subject_kind="customer")
    state.apply(closed)
    assert policy.next_deadline(state) is not None
    state.apply(hold)
    assert policy.next_deadline(state) is None


def test_judge_history_counts_a_repeated_event_id_once(policy: YamlPolicySet) -> None:
    share = {
        "at": "2025-03-01T10:00:00Z",
        "type": "shared",
        "id": "same-id",
        "categories": ["user.contact.email"],
        "use": "essential.service.operations",
        "recipient": "service_provider:host:MA",
        "encrypted": False,
    }
    events = _events(policy, "linkxup", share, share)
    found = judge_history(policy, events)
    assert [(f.finding.rule.rule_id, f.event is not None) for f in found] == [("LX-TLS-012", True)]
    assert found[0].subject.id.get_secret_value() == "s1"


def test_judge_history_keeps_subjects_apart_and_orders_by_occurrence(
    policy: YamlPolicySet,
) -> None:
    events = _events(
        policy,
        "xpertaize",
        {
            "at": "2025-03-01T10:00:00Z",
            "type": "request_opened",
            "subject": "a",
            "request_id": "r",
            "right": "erasure",
        },
        {
            "at": "2025-03-20T10:00:00Z",
            "type": "accessed",
            "subject": "b",
            "categories": ["user.contact.email"],
            "use": "marketing.communications.email",
        },
    )
    found = judge_history(policy, events, now=datetime(2025, 4, 1, tzinfo=UTC))
    assert [(f.finding.rule.rule_id, f.subject.id.get_secret_value()) for f in found] == [
        ("XA-MKT-003", "b"),
        ("XA-DSAR-007", "a"),
    ]
    assert found[1].occurred_at == datetime(2025, 3, 31, 10, tzinfo=UTC)


def test_each_org_names_the_event_types_that_move_its_deadlines(policy: YamlPolicySet) -> None:
    account, fulfilled = EventType.ACCOUNT_CHANGED, EventType.REQUEST_FULFILLED
    moving = {
        org: {t for t in EventType if policy.moves_deadlines(_of_type(policy, org, t))}
        for org in policy.taxonomies
    }
    assert moving == {
        # Closure starts the clock; an erasure or a legal hold stops it.
        "linkxup": {account, fulfilled, EventType.LEGAL_HOLD_CHANGED},
        "xpertaize": {account, EventType.REQUEST_OPENED, fulfilled, EventType.LEGAL_HOLD_CHANGED},
        "connectx": set(),  # no deadline rules
    }


def test_events_that_move_no_deadline_leave_the_next_one_as_it_was(policy: YamlPolicySet) -> None:
    # The judge keeps a subject's next deadline across such events instead of recomputing it:
    # over a demo history with every kind of event, recomputing gives the same instant.
    events = [
        parse_event(e.value, policy.taxonomies)
        for e in demo_events(3, 6000, default_start(), malformed_share=0)
    ]
    states: dict[tuple[str, str], SubjectState] = {}
    kept = 0
    for event in sorted(events, key=lambda e: (e.time, e.id)):
        data = event.data
        key = (data.org, data.subject.id.get_secret_value())
        state = states.setdefault(key, SubjectState(org=data.org, subject_kind=data.subject.kind))
        before = policy.next_deadline(state)
        state.apply(event)
        if not policy.moves_deadlines(event):
            kept += before is not None
            assert policy.next_deadline(state) == before, event.type
    assert kept > 100  # pending deadlines were carried across many events


def _of_type(policy: YamlPolicySet, org: str, event_type: EventType) -> PrivacyEvent:
    access = {"categories": ["user.contact.email"], "use": "essential.service"}
    request = {"request_id": "r1", "right": "erasure"}
    compact: dict[str, Any] = {
        EventType.DATA_ACCESSED: {"type": "accessed", **access},
        EventType.DATA_SHARED: {"type": "shared", "recipient": "service_provider:p:US", **access},
        EventType.CONSENT_CHANGED: {"type": "consent", "use": "marketing", "status": "given"},
        EventType.SETTINGS_CHANGED: {"type": "settings", "settings": {"profile_visible": True}},
        EventType.ACCOUNT_CHANGED: {"type": "account", "status": "closed"},
        EventType.REQUEST_OPENED: {"type": "request_opened", **request},
        EventType.REQUEST_FULFILLED: {"type": "request_fulfilled", **request},
        EventType.LEGAL_HOLD_CHANGED: {"type": "legal_hold", "status": "placed", "reason": "x"},
    }[event_type]
    (event,) = _events(policy, org, {"at": "2025-03-01T10:00:00Z", **compact})
    assert event.type == event_type
    return event
