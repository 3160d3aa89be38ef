"""No input stops the judge: arbitrary bytes and extreme events, judged under the real policies.

Every input must come out either judged (an audit record at its offset) or dead-lettered, never
both, never neither, and nothing may raise; every output must fit in one Kafka message.
Derandomized, so a failure is found again on every run and on CI.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from config.settings import REPO_POLICIES
from events.fitting import audit_messages, fit_dead_letter, fit_record, message_size
from events.limits import DEFAULT_MAX_AHEAD, DEFAULT_MAX_MESSAGE_BYTES, EARLIEST_EVENT_TIME
from streams.judging import Incoming, Judge, Verdicts
from streams.rules.policy import load_policy_set

POLICY = load_policy_set(REPO_POLICIES)
ORGS = sorted(POLICY.taxonomies)
EVENT_TYPES = [
    "privacy.data.accessed",
    "privacy.data.shared",
    "privacy.consent.changed",
    "privacy.settings.changed",
    "privacy.account.changed",
    "privacy.request.opened",
    "privacy.request.fulfilled",
    "privacy.legal_hold.changed",
]
NOW = datetime.now(UTC)
FUZZ = settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- Strategies ------------------------------------------------------------------------------

EXTREME_TIMES = st.sampled_from(
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "1800-06-01T00:00:00Z",
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00Z",
        "2016-12-31T23:59:60Z",  # a real leap second
        "2026-02-29T00:00:00Z",  # not a date
        "2300-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-12:00",
        "2026-03-01T10:00:00",  # no zone
        "2026-03-01",
        "",
    ]
)
RECENT_TIMES = st.integers(min_value=-3 * 365 * 86400, max_value=2 * 86400).map(
    lambda seconds: (NOW + timedelta(seconds=seconds)).isoformat()
)
# Every code point, lone surrogates, NUL and bidi controls included (json.dumps escapes them).
NASTY_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=[]), max_size=40),
    st.sampled_from(["", "\x00", "a\u202eb", "\ud800", "🦄", "\ufeff", " ", "x" * 257]),
)
# Past the message size limit on its own; put into one field of some events.
HUGE_TEXT = "h" * 600_000
# Stands for a 5,000-digit number, spliced in after encoding (Python can't print one).
BIG_NUMBER = "<big-number>"
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(BIG_NUMBER),
)
SCALARS = st.none() | st.booleans() | NUMBERS | NASTY_TEXT
# A value of the wrong shape for any field.
WRONG = SCALARS | st.lists(SCALARS, max_size=4)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NASTY_TEXT, children),
    max_leaves=30,
)


def deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"n": value}
    return value


def type_fields(draw: st.DrawFn, event_type: str, org: str) -> dict[str, Any]:
    """The `data` fields of a valid event of `event_type`, beyond org and subject."""
    taxonomy = POLICY.taxonomies[org]
    categories = st.lists(st.sampled_from(sorted(taxonomy.data_categories)), min_size=1)
    use = st.sampled_from(sorted(taxonomy.data_uses))
    if event_type in ("privacy.data.accessed", "privacy.data.shared"):
        fields = {
            "actor": {"kind": "service", "id": draw(st.sampled_from(["ranker", "🦄-bot"]))},
            "data_categories": draw(categories),
            "data_use": draw(use),
        }
        if event_type == "privacy.data.shared":
            country = draw(st.sampled_from(["FR", "US", "MA", "CN"]))
            kind = draw(st.sampled_from(["ad_network", "employer", "service_provider"]))
            fields["recipient"] = {"id": "adco", "kind": kind, "country": country}
            fields["transfer"] = {"encrypted": draw(st.booleans())}
        return fields
    if event_type == "privacy.consent.changed":
        status = draw(st.sampled_from(["given", "withdrawn", "objected"]))
        return {"data_use": draw(use), "status": status}
    if event_type == "privacy.settings.changed":
        return {"settings": {"auto_share_with_employers": draw(st.booleans())}}
    if event_type == "privacy.account.changed":
        return {"status": draw(st.sampled_from(["created", "closed", "reopened", "active"]))}
    if event_type == "privacy.legal_hold.changed":
        return {"status": draw(st.sampled_from(["placed", "released"])), "reason": "court"}
    return {"request_id": "req-1", "right": draw(st.sampled_from(["erasure", "access"]))}


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for key, child in value.items() for p in leaf_paths(child, (*path, key))]
    if isinstance(value, list):
        return [p for i, child in enumerate(value) for p in leaf_paths(child, (*path, i))]
    return [path]


def replace(document: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        document = document[step]
    document[path[-1]] = value


@st.composite
def extreme_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event of a random type at an extreme time, with up to two fields replaced by
    something of the wrong shape or size."""
    org = draw(st.sampled_from(ORGS))
    event_type = draw(st.sampled_from(EVENT_TYPES))
    subject = draw(st.sampled_from(["s-1", "s-2", "🦄", "مشترك"]))
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt",
        "source": "/fuzz",
        "type": event_type,
        "time": draw(st.one_of(EXTREME_TIMES, RECENT_TIMES, RECENT_TIMES)),
        "data": {
            "org": org,
            "subject": {"id": subject, "kind": "customer"},
            **type_fields(draw, event_type, org),
        },
    }
    for path in draw(st.lists(st.sampled_from(leaf_paths(event)), max_size=2)):
        replace(event, path, draw(st.one_of(WRONG, st.just(HUGE_TEXT))))
    extension = draw(st.one_of(st.none(), st.none(), JSON_VALUES, st.integers(1, 40).map(deep)))
    if extension is not None:
        event["fuzzext"] = extension
    return event


def encode(event: Any) -> bytes:
    return json.dumps(event).encode().replace(f'"{BIG_NUMBER}"'.encode(), b"9" * 5000)


def key_of(value: dict[str, Any]) -> bytes | None:
    subject = value.get("data", {}).get("subject", {}).get("id")
    return subject.encode("utf-8", errors="surrogatepass") if isinstance(subject, str) else None


# --- The property ----------------------------------------------------------------------------


def no_state(key: str) -> None:
    return None


def judge(values: list[tuple[bytes | None, bytes]]) -> Verdicts:
    batch = [
        Incoming("privacy.events", 0, offset, key, value)
        for offset, (key, value) in enumerate(values)
    ]
    return Judge(POLICY, b"fuzz-key").judge_batch(batch, no_state)


def assert_each_judged_or_dead_lettered(verdicts: Verdicts, count: int) -> None:
    judged = {record.offset for record in verdicts.audit}
    dead = {letter.incoming.offset for letter in verdicts.dead_letters}
    assert judged | dead == set(range(count)) and not judged & dead, (judged, dead)
    # The judge dead-letters what it fails on as `internal: ...`: a bug to report, not an
    # outcome of the input.
    internal = [d.error.reason for d in verdicts.dead_letters if d.error.reason.startswith("int")]
    assert not internal, internal


def assert_event_time_stays_in_range(verdicts: Verdicts, judged_at: datetime) -> None:
    # "Now" for deadlines is the newest judged event's time: only events within the accepted
    # range may move it, and no deadline falls due past it.
    latest = judged_at + DEFAULT_MAX_AHEAD
    times = [record.event_time for record in verdicts.audit]
    assert all(EARLIEST_EVENT_TIME <= time <= latest for time in times), times
    for violation in verdicts.violations:
        if violation.deadline is not None:
            assert violation.deadline < max(times), violation


def assert_outputs_fit(verdicts: Verdicts) -> None:
    limit = DEFAULT_MAX_MESSAGE_BYTES
    for letter in verdicts.dead_letters:
        headers = letter.headers(NOW)
        fitted = fit_dead_letter(letter.incoming.key, letter.incoming.value, headers, limit)
        assert message_size(fitted.key, fitted.value, fitted.headers) <= limit
    for violation in verdicts.violations:
        assert len(fit_record(violation, limit)) <= limit
    for message in audit_messages(verdicts.audit, limit, max_records=500):
        assert message_size(None, message) <= limit


@FUZZ
@given(st.lists(st.one_of(JSON_VALUES.map(encode), st.binary(max_size=200)), max_size=8))
def test_arbitrary_bytes_are_dead_lettered(values: list[bytes]) -> None:
    verdicts = judge([(None, value) for value in values])
    assert_each_judged_or_dead_lettered(verdicts, len(values))
    assert_outputs_fit(verdicts)


def account(time: str, status: str, subject: str = "s-1") -> dict[str, Any]:
    data = {"org": "linkxup", "subject": {"id": subject, "kind": "customer"}, "status": status}
    event = {"specversion": "1.0", "id": "evt", "source": "/fuzz", "time": time, "data": data}
    return event | {"type": "privacy.account.changed"}


RECENT = (NOW - timedelta(days=400)).isoformat()


@FUZZ
@given(st.lists(extreme_events(), min_size=1, max_size=12))
# A closure dated 9999: its 30-day erasure deadline is past the calendar's end.
@example([account("9999-12-31T23:59:59Z", "closed")])
# One far-future event among valid ones must not move "now" past their deadlines.
@example([account(RECENT, "closed", "s-2"), account("2300-01-01T00:00:00Z", "active")])
@example([account("0001-01-01T00:00:00+14:00", "closed"), account(RECENT, "created")])
def test_extreme_events_are_judged_or_dead_lettered(events: list[dict[str, Any]]) -> None:
    # Unique ids, so the idempotency key never hides an input.
    for i, event in enumerate(events):
        if isinstance(event["id"], str):
            event["id"] = f"{event['id']}-{i}"
    judged_at = datetime.now(UTC)
    verdicts = judge([(key_of(event), encode(event)) for event in events])
    assert_each_judged_or_dead_lettered(verdicts, len(events))
    assert_event_time_stays_in_range(verdicts, judged_at)
    assert_outputs_fit(verdicts)
