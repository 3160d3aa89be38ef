"""Analysts' triage of violations: acknowledged or resolved, by whom, when, with a note.

Every action is kept (`triage` is append-only history); a violation's triage state is its
newest action. The violation rows themselves are never touched: they are the pipeline's record
of what happened, and the triage is the analysts' record of what they did about it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal, get_args

from pydantic import BaseModel

from sinks.clickhouse.schema import TIME
from sinks.clickhouse.store import Store

TriageState = Literal["acknowledged", "resolved"]
TRIAGE_STATES: Final = get_args(TriageState)
TABLE: Final = "triage"
# A note longer than this is refused, not cut.
MAX_NOTE_CHARS: Final = 4000


class TriageEntry(BaseModel):
    """One analyst action on one violation."""

    org: str
    violation_id: str
    state: TriageState
    note: str
    analyst: str
    at: datetime


class UnknownViolation(LookupError):
    """Triage of a violation id the store does not hold for that org."""


def ensure_triage(store: Store) -> None:
    """Create the triage table where missing; safe to repeat."""
    states = ", ".join(f"'{state}' = {n}" for n, state in enumerate(TRIAGE_STATES, start=1))
    store.command(
        f"CREATE TABLE IF NOT EXISTS {store.database}.{TABLE} ("
        "`org` LowCardinality(String), `violation_id` String, "
        f"`state` Enum8({states}), `note` String, `analyst` String, `at` {TIME}"
        ") ENGINE = MergeTree ORDER BY (org, violation_id, at)"
    )


def record_triage(
    store: Store, org: str, violation_id: str, state: TriageState, note: str, analyst: str
) -> TriageEntry:
    """Store one action, timed now; raise UnknownViolation if the violation is not stored."""
    if not _violation_exists(store, org, violation_id):
        raise UnknownViolation(f"no violation {violation_id!r} is stored for org {org!r}")
    entry = TriageEntry(
        org=org,
        violation_id=violation_id,
        state=state,
        note=note,
        analyst=analyst,
        at=datetime.now(UTC),
    )
    store.command(
        f"INSERT INTO {store.database}.{TABLE} (org, violation_id, state, note, analyst, at) "
        "VALUES ({org:String}, {violation_id:String}, {state:String}, {note:String}, "
        "{analyst:String}, {at:DateTime64(6, 'UTC')})",
        entry.model_dump(),
    )
    return entry


def triage_history(store: Store, org: str, violation_id: str) -> list[TriageEntry]:
    """Every action on the violation, oldest first."""
    rows = store.query_rows(
        "SELECT org, violation_id, toString(state) AS state, note, analyst, at "
        f"FROM {store.database}.{TABLE} "
        "WHERE org = {org:String} AND violation_id = {violation_id:String} ORDER BY at",
        {"org": org, "violation_id": violation_id},
    )
    return [TriageEntry(**row) for row in rows]


def triage_counts(store: Store, orgs: list[str] | None) -> dict[str, int]:
    """How many violations of `orgs` (None: every org) stand at each triage state now (their
    newest action)."""
    where = "WHERE has({orgs:Array(String)}, org)" if orgs is not None else ""
    rows = store.query_rows(
        "SELECT state, toInt64(count()) AS n FROM ("
        "SELECT toString(argMax(state, at)) AS state "
        f"FROM {store.database}.{TABLE} {where} GROUP BY org, violation_id"
        ") GROUP BY state",
        {"orgs": orgs} if orgs is not None else {},
    )
    counts = dict.fromkeys(TRIAGE_STATES, 0)
    counts.update({row["state"]: int(row["n"]) for row in rows})
    return counts


def latest_triage_sql(database: str) -> str:
    """A subquery of each triaged violation's newest action, its columns prefixed `triage_`
    so it joins onto `violations` without ambiguous names."""
    return (
        "SELECT org AS triage_org, violation_id AS triage_violation_id, "
        "toString(argMax(state, at)) AS triage_state, argMax(note, at) AS triage_note, "
        "argMax(analyst, at) AS triage_analyst, max(at) AS triage_at "
        f"FROM {database}.{TABLE} GROUP BY org, violation_id"
    )


def _violation_exists(store: Store, org: str, violation_id: str) -> bool:
    rows = store.query_rows(
        f"SELECT count() AS n FROM {store.database}.violations "
        "WHERE org = {org:String} AND violation_id = {violation_id:String}",
        {"org": org, "violation_id": violation_id},
    )
    return bool(rows[0]["n"])
