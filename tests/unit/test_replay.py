"""Rebuilding events from audit records, and comparing two policy versions on one history."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from events.models import EventType, PrivacyEvent
from events.outputs import AuditRecord
from events.tags import pseudonymise
from events.validation import parse_event
from streams.judging import Incoming, Judge
from streams.rules import YamlPolicySet, load_policy_set
from streams.rules.rejudge import (
    RebuildError,
    ReplayedFinding,
    ReplayError,
    compare,
    event_from_audit,
)

REPO = Path(__file__).resolve().parents[2]
KEY = b"replay-test-key"
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
POLICY = load_policy_set(REPO / "policies")


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def raw_event(
    event_id: str, event_type: str, subject: str, time: datetime, **data: Any
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/linkxup/test",
        "type": event_type,
        "time": time.isoformat(),
        "data": {"org": "linkxup", "subject": {"id": subject, "kind": "customer"}, **data},
    }


def encoded(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def parsed(document: dict[str, Any]) -> PrivacyEvent:
    return parse_event(encoded(document), POLICY.taxonomies)


def judged(documents: Sequence[dict[str, Any]]) -> list[AuditRecord]:
    """The audit records the worker makes of these events (through its real code path)."""
    judge = Judge(POLICY, KEY)
    batch = [
        Incoming("privacy.events", 0, offset, doc["data"]["subject"]["id"].encode(), encoded(doc))
        for offset, doc in enumerate(documents)
    ]
    verdicts = judge.judge_batch(batch, lambda key: None)
    assert not verdicts.dead_letters, verdicts.dead_letters
    return verdicts.audit


def as_pseudonymous(event: PrivacyEvent) -> dict[str, Any]:
    """The event as a rebuild must give it: the subject id replaced by its pseudonym."""
    dumped = event.model_dump(mode="json")
    data = dumped["data"]
    data["subject"]["id"] = pseudonymise(KEY, data["org"], data["subject"]["id"])
    return dumped


SHARE = {
    "actor": {"kind": "service", "id": "ads-sync"},
    "data_categories": ["user.contact.email", "user.name"],
    "data_use": "marketing.advertising",
    "legal_basis": "consent",
    "recipient": {"id": "adnet-1", "kind": "ad_network", "country": "MA"},
    "transfer": {"encrypted": True, "safeguard": "scc"},
    "aggregated": True,
    "explicit_consent": True,
}
ACCESS = {k: SHARE[k] for k in ("actor", "data_categories", "data_use", "legal_basis")}

# One event of every type, each with every field of its data set.
EVERY_TYPE = [
    raw_event("e-access", "privacy.data.accessed", "s1", at(0), **ACCESS),
    raw_event("e-share", "privacy.data.shared", "s1", at(0.1), **SHARE),
    raw_event(
        "e-consent",
        "privacy.consent.changed",
        "s1",
        at(0.2),
        data_use="marketing.advertising",
        status="objected",
        data_categories=["user.contact.email"],
    ),
    raw_event(
        "e-settings",
        "privacy.settings.changed",
        "s1",
        at(0.3),
        settings={
            "profile_visible": False,
            "public_categories": ["user.name"],
            "auto_share_with_employers": True,
        },
    ),
    raw_event("e-account", "privacy.account.changed", "s1", at(0.4), status="closed"),
    # Text that reads as JSON must come back as text.
    raw_event(
        "e-opened", "privacy.request.opened", "s1", at(0.5), request_id="42", right="erasure"
    ),
    raw_event(
        "e-fulfilled",
        "privacy.request.fulfilled",
        "s1",
        at(0.6),
        request_id="42",
        right="erasure",
    ),
    raw_event(
        "e-hold", "privacy.legal_hold.changed", "s1", at(0.7), status="placed", reason="true"
    ),
]

# The same types with the optional fields left out.
SPARSE = [
    raw_event(
        "p-access",
        "privacy.data.accessed",
        "s2",
        at(0),
        **{**ACCESS, "legal_basis": None, "data_categories": ["user.name"]},
    ),
    raw_event(
        "p-share",
        "privacy.data.shared",
        "s2",
        at(0.1),
        **{
            k: v
            for k, v in SHARE.items()
            if k not in ("legal_basis", "aggregated", "explicit_consent", "transfer")
        },
        transfer={"encrypted": False},
    ),
    raw_event(
        "p-consent",
        "privacy.consent.changed",
        "s2",
        at(0.2),
        data_use="marketing",
        status="given",
    ),
    raw_event(
        "p-settings", "privacy.settings.changed", "s2", at(0.3), settings={"profile_visible": True}
    ),
]


def unset_fields(model: BaseModel, path: str = "") -> list[str]:
    """Fields of `model` (and the models in it) that were left at their default."""
    unset = [
        f"{path}{name}" for name in type(model).model_fields if name not in model.model_fields_set
    ]
    for name in model.model_fields_set:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            unset += unset_fields(value, f"{path}{name}.")
    return unset


def test_the_samples_cover_every_event_type_and_every_field() -> None:
    """Guards the round trip below: a new event type or field must be added to the samples."""
    events = [parsed(doc) for doc in EVERY_TYPE]

    assert {e.type for e in events} == set(EventType)
    for event in events:
        assert unset_fields(event.data) == [], event.type
        # `datacontenttype` is the one envelope attribute audit records do not keep.
        assert set(type(event).model_fields) == {
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "datacontenttype",
            "data",
        }


@pytest.mark.parametrize("documents", [EVERY_TYPE, SPARSE], ids=["every-field", "sparse"])
def test_an_event_rebuilt_from_its_audit_record_is_the_event(
    documents: list[dict[str, Any]],
) -> None:
    records = judged(documents)

    rebuilt = [event_from_audit(record) for record in records]

    assert [e.model_dump(mode="json") for e in rebuilt] == [
        as_pseudonymous(parsed(doc)) for doc in documents
    ]


def test_details_that_are_not_fields_of_the_event_type_are_refused() -> None:
    [record] = judged([EVERY_TYPE[4]])
    odd = record.model_copy(update={"details": {"status": "closed", "colour": "red"}})

    with pytest.raises(RebuildError, match="e-account: detail 'colour' is not a field of"):
        event_from_audit(odd)


def test_a_record_that_makes_no_valid_event_names_the_record_and_field() -> None:
    [record] = judged([EVERY_TYPE[4]])

    with pytest.raises(RebuildError, match=r"e-account: data\.status: Input should be 'created'"):
        event_from_audit(record.model_copy(update={"details": {"status": "frozen"}}))
    with pytest.raises(RebuildError, match=r"unknown event type 'privacy\.data\.sold'"):
        event_from_audit(record.model_copy(update={"event_type": "privacy.data.sold"}))
    settings = judged([EVERY_TYPE[3]])[0]
    with pytest.raises(RebuildError, match="detail 'settings' is not valid JSON"):
        event_from_audit(settings.model_copy(update={"details": {"settings": "{oops"}}))


# --- compare ----------------------------------------------------------------------------------


def candidate_policies(target: Path) -> Path:
    """The reference policies with LX-ADNET-001 dropped and LX-CLOSE-008's 30 days cut to 10."""
    shutil.copytree(REPO / "policies", target)
    linkxup = target / "linkxup.yaml"
    text = linkxup.read_text()
    start = text.index("  - id: LX-ADNET-001\n")
    end = text.index("  - id: ", start + 1)
    text = text[:start] + text[end:]
    close = text.index("  - id: LX-CLOSE-008\n")
    deadline = text.index("within: 30 days", close)
    text = text[:deadline] + "within: 10 days" + text[deadline + len("within: 30 days") :]
    linkxup.write_text(text)
    return target


def small_history() -> list[dict[str, Any]]:
    share = {**SHARE, "aggregated": False, "explicit_consent": False, "legal_basis": "contract"}
    return [
        raw_event("d-close", "privacy.account.changed", "d", at(-40), status="closed"),
        raw_event("b-close", "privacy.account.changed", "b", at(0), status="closed"),
        raw_event("c-close", "privacy.account.changed", "c", at(0), status="closed"),
        raw_event("a-share", "privacy.data.shared", "a", at(1), **share),
        raw_event("c-ask", "privacy.request.opened", "c", at(1), request_id="r1", right="erasure"),
        raw_event(
            "c-erased", "privacy.request.fulfilled", "c", at(15), request_id="r1", right="erasure"
        ),
        raw_event("z-new", "privacy.account.changed", "z", at(20), status="created"),
    ]


def keys(findings: list[ReplayedFinding]) -> set[tuple[str, str | None, datetime | None]]:
    return {(f.subject_pseudonym, f.event_id, f.deadline) for f in findings}


def test_compare_reports_what_the_candidate_adds_and_removes(tmp_path: Path) -> None:
    candidate = load_policy_set(candidate_policies(tmp_path / "candidate"))
    history = [parsed(doc) for doc in small_history()]

    report = compare(history, POLICY, candidate, now=at(20))

    assert (report.baseline_version, report.candidate_version) == (
        POLICY.version,
        candidate.version,
    )
    assert report.baseline_version != report.candidate_version
    assert report.events == 7
    assert [(r.rule_id, r.baseline, r.candidate) for r in report.rules] == [
        ("LX-ADNET-001", 1, 0),
        ("LX-CLOSE-008", 1, 3),
    ]
    adnet, close = report.rules
    assert (keys(adnet.added), keys(adnet.removed)) == (set(), {("a", "a-share", None)})
    # Cut to 10 days: the closure of b now lapses, c's erasure came too late, and d's deadline
    # moves 20 days earlier, which is another violation (the worker keys one by its deadline).
    assert keys(close.added) == {
        ("b", None, at(10)),
        ("c", None, at(10)),
        ("d", None, at(-30)),
    }
    assert keys(close.removed) == {("d", None, at(-10))}
    assert {f.cause_event_id for f in close.added} == {"b-close", "c-close", "d-close"}
    assert [f.occurred_at for f in close.added] == sorted(f.occurred_at for f in close.added)
    assert [r.rule_id for r in report.changed] == ["LX-ADNET-001", "LX-CLOSE-008"]


def test_deadlines_are_judged_up_to_now(tmp_path: Path) -> None:
    candidate = load_policy_set(candidate_policies(tmp_path / "candidate"))
    history = [parsed(doc) for doc in small_history()[:3]]  # the closures only

    report = compare(history, POLICY, candidate, now=at(5))

    # Nothing of b and c is due yet under either version; d's deadline moved, as above.
    [close] = report.rules
    assert keys(close.added) == {("d", None, at(-30))}
    assert keys(close.removed) == {("d", None, at(-10))}


def test_the_same_policy_finds_no_differences() -> None:
    history = [parsed(doc) for doc in small_history()]

    report = compare(history, POLICY, POLICY, now=at(20))

    assert report.changed == []
    assert [(r.rule_id, r.baseline, r.candidate) for r in report.rules] == [
        ("LX-ADNET-001", 1, 1),
        ("LX-CLOSE-008", 1, 1),
    ]


def test_a_history_with_an_org_the_candidate_lacks_is_refused(tmp_path: Path) -> None:
    only_xpertaize = load_policy_set(REPO / "policies" / "xpertaize.yaml")
    history = [parsed(doc) for doc in small_history()]

    with pytest.raises(ReplayError, match=r"candidate policy has no rules for org\(s\) linkxup"):
        compare(history, POLICY, only_xpertaize, now=at(20))


def test_candidate_policies_fixture_changes_exactly_two_rules(tmp_path: Path) -> None:
    candidate = load_policy_set(candidate_policies(tmp_path / "candidate"))
    assert isinstance(candidate, YamlPolicySet)

    before = {r.rule_id for r in POLICY.rules}
    after = {r.rule_id for r in candidate.rules}
    assert before - after == {"LX-ADNET-001"}
    assert after <= before
    close = candidate.policies["linkxup"].rules
    assert [r.deadline.within for r in close if r.id == "LX-CLOSE-008" and r.deadline] == [
        "10 days"
    ]
