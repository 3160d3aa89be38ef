"""Turns a rule's `when` tree into fast predicates, one per event type, at load time.

Compiling per event type folds away what the type decides statically: an `event` test becomes a
constant, and a test of a field the type does not have (`recipient_kind` on an access) is false.
A rule that folds to false for a type is never looked at for events of that type.

Every test also knows how to state the fact it checked, so a finding says what broke the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.models import EventType
from events.taxonomy import is_under
from streams.rules.deadlines import DeadlineClock
from streams.rules.durations import Duration
from streams.rules.schema import Condition, Operand, SettingsDefaults
from streams.state import SubjectState

# The event's `data` is typed Any here: each predicate is compiled for one event type, so which
# fields exist is settled at compile time, not re-checked per call on the hot path.
Pred = Callable[[Any, SubjectState, datetime], bool]
Facts = Callable[[Any, SubjectState, datetime], list[str]]

_DATA = frozenset({EventType.DATA_ACCESSED, EventType.DATA_SHARED})
_WITH_USE = _DATA | {EventType.CONSENT_CHANGED}
ALL_TYPES = frozenset(EventType)

# Which event types carry what a test reads; on other types the test is false.
TYPES_OF_TEST: dict[str, frozenset[EventType]] = {
    "categories_any_under": _WITH_USE,
    "categories_all_under": _WITH_USE,
    "public_categories_cover": _WITH_USE,
    "use_under": _WITH_USE,
    "use_not_under": _WITH_USE,
    "consent": _WITH_USE,
    "actor_kind": _DATA,
    "actor_in": _DATA,
    "actor_is_subject": _DATA,
    "legal_basis": _DATA,
    **dict.fromkeys(
        [
            "recipient_kind",
            "recipient_in",
            "recipient_not_in",
            "recipient_country_not_in",
            "encrypted",
            "safeguard_missing",
            "aggregated",
            "explicit_consent",
        ],
        frozenset({EventType.DATA_SHARED}),
    ),
}
# What a test reads, to say so when it can never fire.
FIELD_OF_TEST = {
    "categories_any_under": "data_categories",
    "categories_all_under": "data_categories",
    "public_categories_cover": "data_categories",
    "use_under": "data_use",
    "use_not_under": "data_use",
    "consent": "data_use",
    "actor_kind": "actor",
    "actor_in": "actor",
    "actor_is_subject": "actor",
    "legal_basis": "legal_basis",
    "recipient_kind": "recipient",
    "recipient_in": "recipient",
    "recipient_not_in": "recipient",
    "recipient_country_not_in": "recipient.country",
    "encrypted": "transfer",
    "safeguard_missing": "transfer",
    "aggregated": "aggregated",
    "explicit_consent": "explicit_consent",
}

_ANCESTORS: dict[str, frozenset[str]] = {}


def ancestors(key: str) -> frozenset[str]:
    """`key` and every key above it: `a.b.c` -> {a, a.b, a.b.c}. Cached: keys repeat a lot."""
    found = _ANCESTORS.get(key)
    if found is None:
        parts = key.split(".")
        found = frozenset(".".join(parts[: i + 1]) for i in range(len(parts)))
        _ANCESTORS[key] = found
    return found


@dataclass(frozen=True)
class Node:
    test: Pred
    facts: Facts


Compiled = Node | bool


@dataclass(frozen=True)
class Scope:
    """What a rule's tests may refer to besides the event and the state."""

    lists: Mapping[str, tuple[str, ...]]
    default_basis: Callable[[str], str | None]
    settings: SettingsDefaults
    clock: DeadlineClock | None

    def resolve(self, operand: Operand) -> frozenset[str]:
        if operand.list_name is None:
            return frozenset(operand.keys or ())
        return frozenset(self.lists[operand.list_name])


def compile_condition(condition: Condition, event_type: EventType, scope: Scope) -> Compiled:
    key = condition.key
    if key == "all":
        return _all([compile_condition(c, event_type, scope) for c in condition.all_ or ()])
    if key == "any":
        return _any([compile_condition(c, event_type, scope) for c in condition.any_ or ()])
    if key == "not":
        assert condition.not_ is not None  # guaranteed by the one-key validator
        return _not(compile_condition(condition.not_, event_type, scope))
    if key == "event":
        return event_type in (condition.event or ())
    if event_type not in TYPES_OF_TEST.get(key, ALL_TYPES):
        return False
    return _LEAVES[key](condition.operand, scope)


def as_node(compiled: Compiled) -> Node:
    if isinstance(compiled, Node):
        return compiled
    return Node(lambda d, s, t: compiled, lambda d, s, t: [])


def _all(parts: list[Compiled]) -> Compiled:
    if False in parts:
        return False
    nodes = [p for p in parts if isinstance(p, Node)]
    if not nodes:
        return True
    if len(nodes) == 1:
        return nodes[0]
    tests = tuple(n.test for n in nodes)

    # Plain loops, not all()/any() over a generator: this is the per-event hot path, and the
    # generator costs about as much as the tests themselves.
    def test(d: Any, s: SubjectState, t: datetime) -> bool:
        for each in tests:  # noqa: SIM110
            if not each(d, s, t):
                return False
        return True

    return Node(test, lambda d, s, t: [f for n in nodes for f in n.facts(d, s, t)])


def _any(parts: list[Compiled]) -> Compiled:
    if True in parts:
        return True
    nodes = [p for p in parts if isinstance(p, Node)]
    if not nodes:
        return False
    if len(nodes) == 1:
        return nodes[0]
    tests = tuple(n.test for n in nodes)

    def test(d: Any, s: SubjectState, t: datetime) -> bool:
        for each in tests:  # noqa: SIM110 (hot path, see _all)
            if each(d, s, t):
                return True
        return False

    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        return [f for n in nodes if n.test(d, s, t) for f in n.facts(d, s, t)]

    return Node(test, facts)


def _not(part: Compiled) -> Compiled:
    if isinstance(part, bool):
        return not part
    inner = part.test
    # The inner test's facts state the actual value, which is what a negation needs to show.
    return Node(lambda d, s, t: not inner(d, s, t), part.facts)


def _no_facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
    return []


def _categories_any_under(operand: Operand, scope: Scope) -> Node:
    keys = scope.resolve(operand)

    def test(d: Any, s: SubjectState, t: datetime) -> bool:
        return any(not ancestors(category).isdisjoint(keys) for category in d.data_categories or ())

    return Node(test, _no_facts)


def _categories_all_under(operand: Operand, scope: Scope) -> Node:
    keys = scope.resolve(operand)

    def test(d: Any, s: SubjectState, t: datetime) -> bool:
        categories = d.data_categories or ()
        for category in categories:
            if ancestors(category).isdisjoint(keys):
                return False
        return bool(categories)

    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        outside = [c for c in d.data_categories or () if ancestors(c).isdisjoint(keys)]
        if outside:
            return [f"{', '.join(outside)} not under {operand.describe()}"]
        return [f"all categories under {operand.describe()}"]

    return Node(test, facts)


def _use_under(operand: Operand, scope: Scope) -> Node:
    keys = scope.resolve(operand)
    return Node(
        lambda d, s, t: not ancestors(d.data_use).isdisjoint(keys), _use_facts(operand, keys)
    )


def _use_not_under(operand: Operand, scope: Scope) -> Node:
    keys = scope.resolve(operand)
    return Node(lambda d, s, t: ancestors(d.data_use).isdisjoint(keys), _use_facts(operand, keys))


def _use_facts(operand: Operand, keys: frozenset[str]) -> Facts:
    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        under = not ancestors(d.data_use).isdisjoint(keys)
        # A use that matches an inline key is already named by the event summary.
        if operand.list_name is None and under:
            return []
        return [f"{d.data_use} is {'' if under else 'not '}under {operand.describe()}"]

    return facts


def _actor_kind(kinds: tuple[str, ...], scope: Scope) -> Node:
    allowed = frozenset(kinds)
    return Node(lambda d, s, t: d.actor.kind in allowed, _no_facts)


def _actor_in(operand: Operand, scope: Scope) -> Node:
    ids = scope.resolve(operand)

    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        on = d.actor.id in ids
        return [f"actor {d.actor.id} is {'' if on else 'not '}on {operand.describe()}"]

    return Node(lambda d, s, t: d.actor.id in ids, facts)


def _actor_is_subject(expected: bool, scope: Scope) -> Node:
    def is_subject(d: Any) -> bool:
        return bool(d.actor.id == d.subject.id.get_secret_value())

    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        return ["the actor is the subject" if is_subject(d) else "the actor is not the subject"]

    return Node(lambda d, s, t: is_subject(d) == expected, facts)


def _recipient_kind(kinds: tuple[str, ...], scope: Scope) -> Node:
    allowed = frozenset(kinds)
    return Node(lambda d, s, t: d.recipient.kind in allowed, _no_facts)


def _recipient_facts(operand: Operand, ids: frozenset[str]) -> Facts:
    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        on = d.recipient.id in ids
        return [f"recipient {d.recipient.id} is {'' if on else 'not '}on {operand.describe()}"]

    return facts


def _recipient_in(operand: Operand, scope: Scope) -> Node:
    ids = scope.resolve(operand)
    return Node(lambda d, s, t: d.recipient.id in ids, _recipient_facts(operand, ids))


def _recipient_not_in(operand: Operand, scope: Scope) -> Node:
    ids = scope.resolve(operand)
    return Node(lambda d, s, t: d.recipient.id not in ids, _recipient_facts(operand, ids))


def _recipient_country_not_in(countries: tuple[str, ...], scope: Scope) -> Node:
    inside = frozenset(countries)
    where = ", ".join(countries)

    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        country = d.recipient.country
        return [
            f"recipient country {country} is {'in' if country in inside else 'outside'} {where}"
        ]

    return Node(lambda d, s, t: d.recipient.country not in inside, facts)


def _flag(read: Callable[[Any], bool], yes: str, no: str) -> Callable[[bool, Scope], Node]:
    """A test of a boolean fact of the event, with how to say it either way."""

    def build(expected: bool, scope: Scope) -> Node:
        return Node(
            lambda d, s, t: read(d) == expected,
            lambda d, s, t: [yes if read(d) else no],
        )

    return build


def _legal_basis(bases: tuple[str, ...], scope: Scope) -> Node:
    allowed = frozenset(bases)
    default = scope.default_basis

    def test(d: Any, s: SubjectState, t: datetime) -> bool:
        return (d.legal_basis or default(d.data_use)) in allowed

    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        if d.legal_basis:
            return [f"legal basis {d.legal_basis}"]
        basis = default(d.data_use)
        if basis is None:
            return ["no legal basis given and no policy default for this use"]
        return [f"legal basis {basis} (the policy's default for {d.data_use})"]

    return Node(test, facts)


def _consent(statuses: tuple[str, ...], scope: Scope) -> Node:
    wanted = frozenset(statuses)

    def test(d: Any, s: SubjectState, t: datetime) -> bool:
        record = s.consent_for(d.data_use)
        if record is None:
            return False
        if record.status == "objected":
            return "objected" in wanted and s.objects_to(d.data_use, d.data_categories or [])
        return record.status in wanted

    return Node(test, _consent_facts)


def _consent_facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
    governing = [use for use in s.consents if is_under(d.data_use, use)]
    if not governing:
        return [f"no consent recorded for {d.data_use}"]
    use = max(governing, key=len)
    record = s.consents[use]
    fact = f"consent for {use} {record.status} at {record.at.isoformat()}"
    if record.status == "objected" and record.data_categories is not None:
        fact += f" (objection limited to {', '.join(record.data_categories)})"
    return [fact]


def _setting(name: str, yes: str, no: str) -> Callable[[bool, Scope], Node]:
    """A test of a subject setting, which holds the org's default until the subject sets it."""

    def build(expected: bool, scope: Scope) -> Node:
        default = bool(getattr(scope.settings, name))

        def value(s: SubjectState) -> bool:
            current = getattr(s, name)
            return default if current is None else bool(current)

        def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
            suffix = " (default)" if getattr(s, name) is None else ""
            return [(yes if value(s) else no) + suffix]

        return Node(lambda d, s, t: value(s) == expected, facts)

    return build


def _public_categories_cover(operand: Operand, scope: Scope) -> Node:
    always = scope.resolve(operand)

    def uncovered(d: Any, s: SubjectState) -> list[str]:
        public = always.union(s.public_categories or ())
        return [c for c in d.data_categories or () if ancestors(c).isdisjoint(public)]

    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        hidden = uncovered(d, s)
        if not hidden:
            return ["every accessed category is public"]
        return [f"{', '.join(hidden)} not made public by the subject"]

    return Node(lambda d, s, t: not uncovered(d, s), facts)


def _account_closed_for(text: str, scope: Scope) -> Node:
    duration = Duration.parse(text)

    def test(d: Any, s: SubjectState, t: datetime) -> bool:
        return s.closed_at is not None and t > duration.after(s.closed_at)

    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        if s.closed_at is None:
            return ["the account is open"]
        closed = s.closed_at.isoformat()
        if t > duration.after(s.closed_at):
            return [f"account closed at {closed}, more than {duration} before"]
        return [f"account closed at {closed}, less than {duration} before"]

    return Node(test, facts)


def _erasure_fulfilled(expected: bool, scope: Scope) -> Node:
    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        if s.erased_at is None:
            return ["no erasure fulfilled"]
        return [f"erasure fulfilled at {s.erased_at.isoformat()}"]

    # Only an erasure at or before the event counts: a subject seen again after its erasure
    # starts from the erasure day (events/pseudonyms.py), which a late event may predate.
    return Node(lambda d, s, t: (s.erased_at is not None and s.erased_at <= t) == expected, facts)


def _legal_hold(expected: bool, scope: Scope) -> Node:
    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        if s.legal_hold_since is None:
            return ["no legal hold"]
        return [f"legal hold since {s.legal_hold_since.isoformat()}"]

    return Node(lambda d, s, t: s.on_legal_hold == expected, facts)


def _deadline_passed(expected: bool, scope: Scope) -> Node:
    clock = scope.clock
    if clock is None:
        raise ValueError("deadline_passed needs the rule to have a deadline")

    def test(d: Any, s: SubjectState, t: datetime) -> bool:
        return any(p.due_at < t for p in clock.pending(s)) == expected

    def facts(d: Any, s: SubjectState, t: datetime) -> list[str]:
        passed = [p for p in clock.pending(s) if p.due_at < t]
        if not passed:
            return [f"no {clock.duration} deadline had passed"]
        first = min(passed, key=lambda p: p.due_at)
        return [
            f"{first.started_by}; its {clock.duration} deadline "
            f"({first.due_at.isoformat()}) had passed"
        ]

    return Node(test, facts)


_LEAVES: dict[str, Callable[[Any, Scope], Node]] = {
    "categories_any_under": _categories_any_under,
    "categories_all_under": _categories_all_under,
    "use_under": _use_under,
    "use_not_under": _use_not_under,
    "actor_kind": _actor_kind,
    "actor_in": _actor_in,
    "actor_is_subject": _actor_is_subject,
    "recipient_kind": _recipient_kind,
    "recipient_in": _recipient_in,
    "recipient_not_in": _recipient_not_in,
    "recipient_country_not_in": _recipient_country_not_in,
    "encrypted": _flag(
        lambda d: bool(d.transfer.encrypted), "transfer encrypted", "transfer not encrypted"
    ),
    "safeguard_missing": _flag(
        lambda d: not d.transfer.safeguard,
        "no transfer safeguard recorded",
        "a transfer safeguard is recorded",
    ),
    "aggregated": _flag(
        lambda d: bool(d.aggregated), "marked aggregated", "not marked aggregated/anonymised"
    ),
    "explicit_consent": _flag(
        lambda d: bool(d.explicit_consent),
        "explicit consent given for this share",
        "no explicit consent for this share",
    ),
    "legal_basis": _legal_basis,
    "consent": _consent,
    "profile_visible": _setting("profile_visible", "profile visible", "profile hidden"),
    "public_categories_cover": _public_categories_cover,
    "auto_share_with_employers": _setting(
        "auto_share_with_employers",
        "automatic sharing with employers on",
        "automatic sharing with employers turned off",
    ),
    "account_closed_for": _account_closed_for,
    "erasure_fulfilled": _erasure_fulfilled,
    "legal_hold": _legal_hold,
    "deadline_passed": _deadline_passed,
}
TESTS = frozenset(_LEAVES) | {"event"}
