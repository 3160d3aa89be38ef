"""The conformance cases made real: each case's events on subjects of its own, so all cases
can go through one pipeline (or one judge) together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from events.models import PrivacyEvent
from events.outputs import Violation
from streams.rules import SubjectFinding
from streams.rules.policy import YamlPolicySet
from tests.conformance.cases import Case, case_files, org_of
from tests.conformance.compact import build_events

# (subject id, rule id, id of the breaking event or "deadline <when>")
Verdict = tuple[str, str, str]


@dataclass(frozen=True)
class Prepared:
    """A case made real: its events, on subjects no other case uses."""

    tag: str
    rule_id: str
    case: Case
    events: list[PrivacyEvent]


def prepare(policy: YamlPolicySet) -> tuple[list[Prepared], list[str]]:
    """Every case without a policy override, and the names of those with one."""
    prepared: list[Prepared] = []
    overridden: list[str] = []
    for rule_id, file in case_files().items():
        for case in file.cases:
            if case.policy is not None:
                overridden.append(f"{rule_id}: {case.name}")
                continue
            tag = f"c{len(prepared) + len(overridden):03d}"
            org = org_of(policy, rule_id)
            kind = policy.policies[org].subject_kinds[0]
            items = [isolated(item, tag) for item in case.events]
            events = build_events(items, org, kind, policy.taxonomies, f"{tag}-{rule_id}")
            prepared.append(Prepared(tag, rule_id, case, events))
    return prepared, overridden


def isolated(item: Mapping[str, Any], tag: str) -> dict[str, Any]:
    """A compact event moved onto the case's own subject, and its event id if it names one.

    An actor or recipient with the subject's id is the subject itself (a member viewing their
    own profile), so it moves along.
    """
    subject = item.get("subject", "s1")
    moved = {**item, "subject": f"{tag}-{subject}"}
    if "id" in item:
        moved["id"] = f"{tag}-{item['id']}"
    for party in ("actor", "recipient"):
        if party in item:
            kind, party_id, *rest = str(item[party]).split(":")
            if party_id == subject:
                moved[party] = ":".join([kind, f"{tag}-{party_id}", *rest])
    return moved


def in_global_time_order(prepared: list[Prepared]) -> list[PrivacyEvent]:
    return sorted((e for p in prepared for e in p.events), key=lambda e: (e.time, e.id))


def subject_id(event: PrivacyEvent) -> str:
    return event.data.subject.id.get_secret_value()


def deadline_cause(deadline: datetime) -> str:
    return f"deadline {deadline.astimezone(UTC).isoformat()}"


def in_process_verdict(found: SubjectFinding) -> Verdict:
    cause = found.event.id if found.event else deadline_cause(_deadline(found.finding.deadline))
    return (found.subject.id.get_secret_value(), found.finding.rule.rule_id, cause)


def stored_verdict(violation: Violation, subjects: Mapping[str, str]) -> Verdict:
    assert violation.subject_pseudonym in subjects, f"unknown subject in {violation}"
    cause = (
        deadline_cause(_deadline(violation.deadline))
        if violation.event_type == "deadline"
        else violation.event_id
    )
    return (subjects[violation.subject_pseudonym], violation.rule_id, cause)


def _deadline(value: datetime | None) -> datetime:
    assert value is not None, "a deadline verdict without its deadline"
    return value
