"""The policy-as-code engine: YAML policy files compiled into a `PolicySet`.

Adding an org is adding a file: its taxonomy extensions, default legal bases, named lists and
rules are all data; the code below only knows the condition vocabulary (see `schema.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from events.models import DataAccessed, DataShared, EventType, PrivacyEvent
from events.taxonomy import Taxonomy
from streams.rules.base import Finding, PolicySet, RuleInfo
from streams.rules.check import ParsedPolicy, PolicyError, read_policies
from streams.rules.compile import Node, Pred, Scope, ancestors, as_node, compile_condition
from streams.rules.deadlines import DeadlineClock
from streams.rules.schema import PolicyFile, Rule
from streams.state import SubjectState

VERSION_LENGTH = 12


def load_policy_set(path: Path) -> YamlPolicySet:
    """Load one policy file or every *.yaml in a directory; raise `PolicyError` on any problem."""
    parsed, problems = read_policies(path)
    if problems:
        raise PolicyError(problems)
    return YamlPolicySet(parsed)


def policy_version(contents: Mapping[str, bytes]) -> str:
    """A short sha256 of the policy files' bytes, taken in file-name order."""
    digest = hashlib.sha256()
    for name in sorted(contents):
        data = contents[name]
        # Length-prefixed, so moving bytes from one file to the next changes the digest.
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:VERSION_LENGTH]


@dataclass(frozen=True)
class _EventRule:
    info: RuleInfo
    node: Node
    quote: str

    def finding(self, event: PrivacyEvent, state: SubjectState) -> Finding:
        facts = self.node.facts(event.data, state, event.time)
        parts = [_summary(event), *facts, self.quote]
        return Finding(rule=self.info, explanation="; ".join(parts))


@dataclass(frozen=True)
class _DeadlineRule:
    info: RuleInfo
    clock: DeadlineClock
    quote: str

    def findings(self, state: SubjectState, now: datetime) -> list[Finding]:
        return [
            Finding(
                rule=self.info,
                explanation=(
                    f"{pending.started_by}; deadline {pending.due_at.isoformat()} "
                    f"({self.clock.duration} later) passed with {self.clock.missed_phrase()}; "
                    f"{self.quote}"
                ),
                deadline=pending.due_at,
                cause_event_id=pending.cause_event_id,
            )
            for pending in self.clock.missed(state, now)
            if not state.has_fired(self.info.rule_id, pending.due_at)
        ]

    def next_due(self, state: SubjectState) -> datetime | None:
        return self.clock.next_due(state, self.info.rule_id)


class _OrgPolicy:
    """One org's rules, compiled per event type."""

    def __init__(self, parsed: ParsedPolicy) -> None:
        policy = parsed.policy
        self.policy = policy
        self.taxonomy = parsed.taxonomy
        self.default_basis = _default_basis(policy)
        self.infos = tuple(_info(policy, rule) for rule in policy.rules)
        by_type = {event_type: self._compile_for(event_type) for event_type in EventType}
        # (test, rule) pairs, so the hot loop does no attribute lookups.
        self.tests: dict[str, tuple[tuple[Pred, _EventRule], ...]] = {
            event_type: tuple((rule.node.test, rule) for rule in rules)
            for event_type, rules in by_type.items()
        }
        self.deadlines = tuple(
            _DeadlineRule(info, DeadlineClock.of(rule.deadline), _quote(policy, rule))
            for info, rule in zip(self.infos, policy.rules, strict=True)
            if rule.deadline is not None
        )
        self.deadline_inputs = frozenset().union(*(r.clock.moved_by for r in self.deadlines))

    def _compile_for(self, event_type: EventType) -> tuple[_EventRule, ...]:
        compiled = []
        for info, rule in zip(self.infos, self.policy.rules, strict=True):
            if rule.when is None:
                continue
            clock = DeadlineClock.of(rule.deadline) if rule.deadline else None
            scope = Scope(
                self.policy.lists, self.default_basis, self.policy.settings_defaults, clock
            )
            result = compile_condition(rule.when, event_type, scope)
            if result is not False:
                compiled.append(_EventRule(info, as_node(result), _quote(self.policy, rule)))
        return tuple(compiled)


class YamlPolicySet(PolicySet):
    def __init__(self, parsed: list[ParsedPolicy]) -> None:
        self.version = policy_version({p.path.name: p.raw for p in parsed})
        self._orgs = {p.policy.org: _OrgPolicy(p) for p in parsed}
        self._taxonomies = {org: compiled.taxonomy for org, compiled in self._orgs.items()}

    @property
    def taxonomies(self) -> Mapping[str, Taxonomy]:
        return self._taxonomies

    @property
    def rules(self) -> tuple[RuleInfo, ...]:
        """Every rule of every org, in file order."""
        return tuple(info for org in self._orgs.values() for info in org.infos)

    @property
    def policies(self) -> Mapping[str, PolicyFile]:
        return {org: compiled.policy for org, compiled in self._orgs.items()}

    def judge(self, event: PrivacyEvent, state: SubjectState) -> list[Finding]:
        data, at = event.data, event.time
        findings = []
        for test, rule in self._org(data.org).tests[event.type]:
            if test(data, state, at):
                findings.append(rule.finding(event, state))
        return findings

    def due(self, state: SubjectState, now: datetime) -> list[Finding]:
        rules = self._org(state.org).deadlines
        if not rules:
            return []
        findings = [finding for rule in rules for finding in rule.findings(state, now)]
        return sorted(findings, key=lambda f: f.deadline or now) if findings else findings

    def next_deadline(self, state: SubjectState) -> datetime | None:
        due = (rule.next_due(state) for rule in self._org(state.org).deadlines)
        return min((d for d in due if d is not None), default=None)

    def moves_deadlines(self, event: PrivacyEvent) -> bool:
        return event.type in self._org(event.data.org).deadline_inputs

    def _org(self, org: str) -> _OrgPolicy:
        compiled = self._orgs.get(org)
        if compiled is None:
            raise ValueError(f"no policy for org {org!r} (orgs: {', '.join(sorted(self._orgs))})")
        return compiled


def _info(policy: PolicyFile, rule: Rule) -> RuleInfo:
    return RuleInfo(
        rule_id=rule.id,
        org=policy.org,
        severity=rule.severity,
        section=rule.section,
        text=rule.text,
    )


def _quote(policy: PolicyFile, rule: Rule) -> str:
    return f'policy: "{rule.text}" ({policy.name} §{rule.section})'


def _default_basis(policy: PolicyFile) -> Callable[[str], str | None]:
    """The org's default legal basis for a use: the one given for its most specific ancestor."""
    defaults = policy.default_legal_basis
    cache: dict[str, str | None] = {}

    def lookup(use: str) -> str | None:
        if use not in cache:
            governing = [key for key in ancestors(use) if key in defaults]
            cache[use] = defaults[max(governing, key=len)] if governing else None
        return cache[use]

    return lookup


def _summary(event: PrivacyEvent) -> str:
    data = event.data
    if isinstance(data, DataAccessed):
        what = f"{', '.join(data.data_categories)} for {data.data_use}"
        who = f"{data.actor.kind} {data.actor.id}"
        if isinstance(data, DataShared):
            to = data.recipient
            return f"{who} shared {what} with {to.kind} {to.id} ({to.country})"
        return f"{who} accessed {what}"
    return f"{event.type} event {event.id}"
