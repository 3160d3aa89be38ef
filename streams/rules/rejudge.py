"""Re-judging stored history under another policy version, without touching live results.

The store keeps audit records, not events: `event_from_audit` rebuilds the event each record was
made from (the worker's `_audit_record` in reverse), with the subject's pseudonym standing in for
its id. `compare` judges one history under two policy sets in-process and reports, per rule,
the findings only one of them makes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from events.models import DATA_MODELS, DataAccessed, DataShared, EventData, PrivacyEvent
from events.outputs import AuditRecord
from streams.rules.base import PolicySet
from streams.rules.replay import SubjectFinding, judge_history

_EVENTS: TypeAdapter[PrivacyEvent] = TypeAdapter(PrivacyEvent)


class RebuildError(ValueError):
    """A stored audit record from which no valid event can be rebuilt."""


class ReplayError(ValueError):
    """A history that a policy set cannot judge."""


def event_from_audit(record: AuditRecord) -> PrivacyEvent:
    """The event an audit record was made from, its subject id replaced by the pseudonym.

    Everything the rules read is rebuilt exactly. The optional CloudEvents `datacontenttype`
    is not stored (it can only say JSON) and comes back unset.
    """
    model = DATA_MODELS.get(record.event_type)
    if model is None:
        raise RebuildError(
            f"audit record {record.event_id}: unknown event type {record.event_type!r}"
        )
    data: dict[str, Any] = {
        "org": record.org,
        "subject": {"id": record.subject_pseudonym, "kind": record.subject_kind},
    }
    if issubclass(model, DataAccessed):
        data.update(_access_fields(record))
        if issubclass(model, DataShared):
            data.update(_share_fields(record))
    else:
        data.update(_detail_fields(record, model))
    envelope = {
        "specversion": "1.0",
        "id": record.event_id,
        "source": record.source,
        "type": record.event_type,
        "time": record.event_time.isoformat(),
        "data": data,
    }
    try:
        # Through JSON: the event models are strict, and JSON is the form they validate.
        return _EVENTS.validate_json(json.dumps(envelope))
    except ValidationError as error:
        raise RebuildError(f"audit record {record.event_id}: {_first_problem(error)}") from None


def _access_fields(record: AuditRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "actor": {"kind": record.actor_kind, "id": record.actor_id},
        "data_categories": list(record.data_categories),
        "data_use": record.data_use,
    }
    if record.legal_basis is not None:
        fields["legal_basis"] = record.legal_basis
    return fields


def _share_fields(record: AuditRecord) -> dict[str, Any]:
    return {
        "recipient": {
            "id": record.recipient_id,
            "kind": record.recipient_kind,
            "country": record.recipient_country,
        },
        "transfer": {"encrypted": record.encrypted, "safeguard": record.safeguard},
        "aggregated": record.aggregated,
        "explicit_consent": record.explicit_consent,
    }


def _detail_fields(record: AuditRecord, model: type[EventData]) -> dict[str, Any]:
    # The worker keeps text fields as they are and JSON-encodes every other value.
    fields: dict[str, Any] = {}
    for name, value in record.details.items():
        field = model.model_fields.get(name)
        if field is None or name in ("org", "subject"):
            raise RebuildError(
                f"audit record {record.event_id}: detail {name!r} is not a field of "
                f"{record.event_type} data"
            )
        fields[name] = value if _is_text(field.annotation) else _decode(record, name, value)
    return fields


def _is_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    return get_origin(annotation) is Literal and all(
        isinstance(a, str) for a in get_args(annotation)
    )


def _decode(record: AuditRecord, name: str, value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        raise RebuildError(
            f"audit record {record.event_id}: detail {name!r} is not valid JSON: {value[:80]!r}"
        ) from None


def _first_problem(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    # The first step of a discriminated union's location is the type tag, not a field.
    where = ".".join(str(part) for part in first["loc"][1:])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


class ReplayedFinding(BaseModel):
    """A finding of a replay: which rule, whose data, and when, in event time."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    org: str
    subject_pseudonym: str
    # The event that broke the rule; None for a missed deadline.
    event_id: str | None
    # For a missed deadline: when it fell due, and the event that started its clock.
    deadline: datetime | None = None
    cause_event_id: str | None = None
    occurred_at: datetime
    explanation: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes two findings the same violation: the rule, the subject, and the event
        that broke the rule or the deadline that passed, so a deadline that moves is a
        different violation, as it is for the worker."""
        cause = self.event_id if self.event_id is not None else f"@{self.deadline}"
        return (self.rule_id, self.org, self.subject_pseudonym, cause)


_Findings = dict[tuple[str, str, str, str], ReplayedFinding]


class RuleChange(BaseModel):
    """One rule's findings under both versions, and the ones only one version makes."""

    rule_id: str
    org: str
    baseline: int
    candidate: int
    # Made under the candidate only, and under the baseline only; in event-time order.
    added: list[ReplayedFinding]
    removed: list[ReplayedFinding]


class ReplayReport(BaseModel):
    baseline_version: str
    candidate_version: str
    events: int
    # "Now" for deadlines: deadlines due before it were judged, later ones were not.
    now: datetime
    # Every rule that fired under either version, by rule id.
    rules: list[RuleChange]

    @property
    def changed(self) -> list[RuleChange]:
        return [r for r in self.rules if r.added or r.removed]


def compare(
    history: Sequence[PrivacyEvent], baseline: PolicySet, candidate: PolicySet, now: datetime
) -> ReplayReport:
    """Judge `history` under both policy sets and report, per rule, what the candidate adds
    and removes. Deadlines are judged up to `now`, in event time."""
    for name, policy in (("baseline", baseline), ("candidate", candidate)):
        _check_orgs(history, policy, name)
    before = _by_key(judge_history(baseline, history, now))
    after = _by_key(judge_history(candidate, history, now))
    rule_ids = sorted({key[0] for key in (*before, *after)})
    return ReplayReport(
        baseline_version=baseline.version,
        candidate_version=candidate.version,
        events=len(history),
        now=now,
        rules=[_rule_change(rule_id, before, after) for rule_id in rule_ids],
    )


def _rule_change(rule_id: str, before: _Findings, after: _Findings) -> RuleChange:
    mine_before = {k: f for k, f in before.items() if k[0] == rule_id}
    mine_after = {k: f for k, f in after.items() if k[0] == rule_id}
    org = next(iter((mine_before | mine_after).values())).org
    return RuleChange(
        rule_id=rule_id,
        org=org,
        baseline=len(mine_before),
        candidate=len(mine_after),
        added=[f for k, f in mine_after.items() if k not in mine_before],
        removed=[f for k, f in mine_before.items() if k not in mine_after],
    )


def _check_orgs(history: Iterable[PrivacyEvent], policy: PolicySet, name: str) -> None:
    missing = sorted({e.data.org for e in history} - set(policy.taxonomies))
    if missing:
        raise ReplayError(
            f"the {name} policy has no rules for org(s) {', '.join(missing)} found in the "
            f"history (it covers: {', '.join(sorted(policy.taxonomies)) or 'none'})"
        )


def _by_key(findings: list[SubjectFinding]) -> _Findings:
    replayed = (_replayed(f) for f in findings)
    return {f.key: f for f in replayed}


def _replayed(found: SubjectFinding) -> ReplayedFinding:
    finding = found.finding
    return ReplayedFinding(
        rule_id=finding.rule.rule_id,
        org=found.org,
        subject_pseudonym=found.subject.id.get_secret_value(),
        event_id=found.event.id if found.event is not None else None,
        deadline=finding.deadline,
        cause_event_id=finding.cause_event_id,
        occurred_at=found.occurred_at,
        explanation=finding.explanation,
    )
