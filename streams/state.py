"""Per-subject privacy state, as the events of one subject build it up in event-time order."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from events.models import (
    AccountChangedEvent,
    ConsentChangedEvent,
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
        at = event.time
        self.record(event.id, at)
        match event:
            case ConsentChangedEvent(data=data):
                if self._newest(f"consent:{data.data_use}", at):
                    self.consents[data.data_use] = Consent(
                        status=data.status, at=at, data_categories=data.data_categories
                    )
            case SettingsChangedEvent(data=data):
                for name, value in data.settings.model_dump(exclude_none=True).items():
                    if self._newest(f"setting:{name}", at):
                        setattr(self, name, value)
            case AccountChangedEvent(data=data):
                self._apply_account(data.status, at, event.id)
            case RequestOpenedEvent(data=data):
                if self._newest(f"request:{data.request_id}", at):
                    self.open_requests[data.request_id] = OpenRequest(
                        right=data.right, opened_at=at, event_id=event.id
                    )
            case RequestFulfilledEvent(data=data):
                if self._newest(f"request:{data.request_id}", at):
                    self.open_requests.pop(data.request_id, None)
                if data.right == "erasure" and (self.erased_at is None or at > self.erased_at):
                    self.erased_at = at
            case LegalHoldChangedEvent(data=data):
                if self._newest("legal_hold", at):
                    self.legal_hold_since = at if data.status == "placed" else None

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
