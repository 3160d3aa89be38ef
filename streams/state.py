"""Per-subject privacy state, as the events of one subject build it up in event-time order."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from events.models import (
    AccountChangedEvent,
    ConsentChangedEvent,
    DataAccessedEvent,
    DataSharedEvent,
    LegalHoldChangedEvent,
    PrivacyEvent,
    RequestFulfilledEvent,
    RequestOpenedEvent,
    SettingsChangedEvent,
)
from events.taxonomy import is_under

# Enough to catch a producer's retry or a replayed batch; the store dedups by id regardless.
RECENT_IDS = 64


def deadline_key(rule_id: str, deadline: datetime) -> str:
    """Identifies one deadline of one rule, so it is reported once."""
    return f"{rule_id}@{deadline.isoformat()}"


class Consent(BaseModel):
    status: Literal["given", "withdrawn", "objected"]
    at: datetime
    # For an objection: only these categories (None: all of them).
    data_categories: list[str] | None = None


class OpenRequest(BaseModel):
    right: str
    opened_at: datetime
    event_id: str


class SubjectState(BaseModel):
    """Everything the rules need to know about one subject of one org."""

    org: str
    subject_kind: str
    consents: dict[str, Consent] = Field(default_factory=dict)
    profile_visible: bool | None = None
    public_categories: list[str] | None = None
    auto_share_with_employers: bool | None = None
    account_status: str | None = None
    created_at: datetime | None = None
    closed_at: datetime | None = None
    closed_event_id: str | None = None
    last_activity_at: datetime | None = None
    last_activity_event_id: str | None = None
    open_requests: dict[str, OpenRequest] = Field(default_factory=dict)
    erased_at: datetime | None = None
    legal_hold_since: datetime | None = None
    # Deadlines already reported, so each fires once (see `deadline_key`).
    fired_deadlines: list[str] = Field(default_factory=list)
    recent_event_ids: list[str] = Field(default_factory=list)
    last_event_time: datetime | None = None
    # Event time of the newest change to each aspect ("consent:<use>", "setting:<name>",
    # "account", "legal_hold", "request:<id>"), so an older change arriving late never
    # overrides a newer one.
    changed_at: dict[str, datetime] = Field(default_factory=dict)

    def consent_for(self, data_use: str) -> Consent | None:
        """The consent record that governs a use: the one for the most specific ancestor key."""
        governing = [use for use in self.consents if is_under(data_use, use)]
        return self.consents[max(governing, key=len)] if governing else None

    def has_consent(self, data_use: str) -> bool:
        consent = self.consent_for(data_use)
        return consent is not None and consent.status == "given"

    def objects_to(self, data_use: str, categories: list[str]) -> bool:
        """True when the subject objected to this use of (any of) these categories."""
        consent = self.consent_for(data_use)
        if consent is None or consent.status != "objected":
            return False
        if consent.data_categories is None:
            return True
        return any(is_under(c, o) for c in categories for o in consent.data_categories)

    @property
    def on_legal_hold(self) -> bool:
        return self.legal_hold_since is not None

    def has_fired(self, rule_id: str, deadline: datetime) -> bool:
        # Most subjects have had no deadline fire: no key to format.
        fired = self.fired_deadlines
        return bool(fired) and deadline_key(rule_id, deadline) in fired

    def mark_fired(self, rule_id: str, deadline: datetime) -> None:
        self.fired_deadlines.append(deadline_key(rule_id, deadline))

    def fired_before(self, instant: datetime) -> list[str]:
        """The reported deadlines that fell before `instant` (see `deadline_key`)."""
        return [
            key
            for key in self.fired_deadlines
            if datetime.fromisoformat(key.rsplit("@", 1)[1]) < instant
        ]

    def seen(self, event_id: str) -> bool:
        return event_id in self.recent_event_ids

    def record(self, event_id: str, at: datetime) -> None:
        """Note that an event happened, whatever its type: all an access changes."""
        ids = self.recent_event_ids
        ids.append(event_id)
        del ids[:-RECENT_IDS]
        if self.last_event_time is None or at > self.last_event_time:
            self.last_event_time = at

    def apply(self, event: PrivacyEvent) -> None:
        """Fold one event into the state (after the rules have judged it against the old state)."""
        self.apply_change(event.id, event.time, state_change(event))

    def apply_change(self, event_id: str, at: datetime, change: StateChange | None) -> None:
        """Fold one event into the state, given what `state_change` found in it."""
        self.record(event_id, at)
        if change is None:
            return
        match change:
            case ("consent", data_use, status, categories):
                if self._newest(f"consent:{data_use}", at):
                    self.consents[data_use] = Consent(
                        status=status,
                        at=at,
                        data_categories=None if categories is None else list(categories),
                    )
            case ("settings", settings):
                for name, value in settings:
                    if self._newest(f"setting:{name}", at):
                        setattr(self, name, list(value) if isinstance(value, tuple) else value)
            case ("account", status):
                self._apply_account(status, at, event_id)
            case ("request_opened", request_id, right):
                if self._newest(f"request:{request_id}", at):
                    self.open_requests[request_id] = OpenRequest(
                        right=right, opened_at=at, event_id=event_id
                    )
            case ("request_fulfilled", request_id, right):
                if self._newest(f"request:{request_id}", at):
                    self.open_requests.pop(request_id, None)
                if right == "erasure" and (self.erased_at is None or at > self.erased_at):
                    self.erased_at = at
            case ("legal_hold", status):
                if self._newest("legal_hold", at):
                    self.legal_hold_since = at if status == "placed" else None

    def _newest(self, aspect: str, at: datetime) -> bool:
        """Record a change of `aspect` at `at`, unless a newer change was already applied."""
        previous = self.changed_at.get(aspect)
        if previous is not None and previous > at:
            return False
        self.changed_at[aspect] = at
        return True

    def _apply_account(self, status: str, at: datetime, event_id: str) -> None:
        if self.last_activity_at is None or at >= self.last_activity_at:
            self.last_activity_at, self.last_activity_event_id = at, event_id
        if status == "active" or not self._newest("account", at):
            return
        self.account_status = status
        if status == "created":
            self.created_at = at
        elif status == "closed":
            self.closed_at, self.closed_event_id = at, event_id
        elif status == "reopened":
            self.closed_at = self.closed_event_id = None


# What an event changes in a subject's state besides its id and time, as plain values in
# tuples: a kept event holds it, so it can be folded into a base later without being parsed
# again, and the garbage collector stops walking tuples that hold only strings.
ConsentChange = tuple[Literal["consent"], str, str, tuple[str, ...] | None]
SettingsChange = tuple[Literal["settings"], tuple[tuple[str, bool | tuple[str, ...]], ...]]
StatusChange = tuple[Literal["account", "legal_hold"], str]
RequestChange = tuple[Literal["request_opened", "request_fulfilled"], str, str]
StateChange = ConsentChange | SettingsChange | StatusChange | RequestChange


def state_change(event: PrivacyEvent) -> StateChange | None:
    """What `event` changes in a subject's state (None for an access, which changes nothing
    but the recent ids and the newest event time)."""
    match event:
        case DataAccessedEvent() | DataSharedEvent():
            return None  # the bulk of events: no need to try every other type
        case ConsentChangedEvent(data=data):
            categories = data.data_categories
            return (
                "consent",
                data.data_use,
                data.status,
                None if categories is None else tuple(categories),
            )
        case SettingsChangedEvent(data=data):
            # Its fields in declaration order, unset ones left out: `model_dump(exclude_none=True)`
            # without the serializer.
            settings = data.settings.__dict__.items()
            return (
                "settings",
                tuple(
                    (k, tuple(v) if isinstance(v, list) else v)
                    for k, v in settings
                    if v is not None
                ),
            )
        case AccountChangedEvent(data=data):
            return ("account", data.status)
        case RequestOpenedEvent(data=data):
            return ("request_opened", data.request_id, data.right)
        case RequestFulfilledEvent(data=data):
            return ("request_fulfilled", data.request_id, data.right)
        case LegalHoldChangedEvent(data=data):
            return ("legal_hold", data.status)
    return None
