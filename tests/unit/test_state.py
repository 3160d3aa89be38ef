"""Per-subject state folds events in order: consent cycles, objections, accounts, requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from events.models import PrivacyEvent
from streams.state import SubjectState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ADAPTER: TypeAdapter[PrivacyEvent] = TypeAdapter(PrivacyEvent)


def event(kind: str, minutes: int, **data: Any) -> PrivacyEvent:
    return ADAPTER.validate_python(
        {
            "specversion": "1.0",
            "id": f"e{minutes}",
            "source": "/test",
            "type": f"privacy.{kind}",
            "time": T0 + timedelta(minutes=minutes),
            "data": {"org": "linkxup", "subject": {"id": "s", "kind": "customer"}, **data},
        },
        strict=False,
    )


def fold(*events: PrivacyEvent) -> SubjectState:
    state = SubjectState(org="linkxup", subject_kind="customer")
    for e in events:
        state.apply(e)
    return state


def test_consent_given_withdrawn_given_again() -> None:
    use = "marketing.communications"
    state = fold(event("consent.changed", 1, data_use=use, status="given"))
    assert state.has_consent("marketing.communications.email")
    state.apply(event("consent.changed", 2, data_use=use, status="withdrawn"))
    assert not state.has_consent("marketing.communications.email")
    state.apply(event("consent.changed", 3, data_use=use, status="given"))
    assert state.has_consent(use)


def test_most_specific_consent_governs() -> None:
    state = fold(
        event("consent.changed", 1, data_use="marketing", status="given"),
        event("consent.changed", 2, data_use="marketing.advertising", status="withdrawn"),
    )
    assert state.has_consent("marketing.communications.email")
    assert not state.has_consent("marketing.advertising.first_party.targeted")
    assert not state.has_consent("analytics")


def test_objection_limited_to_categories() -> None:
    state = fold(
        event(
            "consent.changed",
            1,
            data_use="marketing.advertising",
            status="objected",
            data_categories=["user.demographic"],
        )
    )
    assert state.objects_to("marketing.advertising.profiling", ["user.demographic.age_range"])
    assert not state.objects_to("marketing.advertising.profiling", ["user.contact.email"])


def test_account_closed_and_reopened() -> None:
    state = fold(
        event("account.changed", 1, status="created"), event("account.changed", 2, status="closed")
    )
    assert state.closed_at == T0 + timedelta(minutes=2) and state.closed_event_id == "e2"
    state.apply(event("account.changed", 3, status="reopened"))
    assert state.closed_at is None and state.account_status == "reopened"


def test_requests_holds_and_settings() -> None:
    state = fold(
        event("request.opened", 1, request_id="r1", right="erasure"),
        event("legal_hold.changed", 2, status="placed", reason="dispute"),
        event("settings.changed", 3, settings={"auto_share_with_employers": False}),
    )
    assert "r1" in state.open_requests and state.on_legal_hold
    assert state.auto_share_with_employers is False and state.profile_visible is None
    state.apply(event("request.fulfilled", 4, request_id="r1", right="erasure"))
    state.apply(event("legal_hold.changed", 5, status="released", reason="settled"))
    assert not state.open_requests and state.erased_at is not None and not state.on_legal_hold


def test_state_round_trips_through_json() -> None:
    state = fold(event("consent.changed", 1, data_use="marketing", status="given"))
    state.mark_fired("XA-DSAR-007", T0)
    again = SubjectState.model_validate(state.model_dump(mode="json"))
    assert again == state and again.has_fired("XA-DSAR-007", T0) and again.seen("e1")


def test_a_late_older_change_never_overrides_a_newer_one() -> None:
    use = "marketing.communications"
    state = fold(
        event("consent.changed", 5, data_use=use, status="withdrawn"),
        event("consent.changed", 1, data_use=use, status="given"),  # arrives late
        event("settings.changed", 6, settings={"profile_visible": False}),
        event("settings.changed", 2, settings={"profile_visible": True}),
        event("account.changed", 7, status="closed"),
        event("account.changed", 3, status="reopened"),
        event("request.fulfilled", 9, request_id="r1", right="erasure"),
        event("request.opened", 8, request_id="r1", right="erasure"),
    )
    assert not state.has_consent(use)
    assert state.profile_visible is False
    assert state.closed_at == T0 + timedelta(minutes=7)
    assert not state.open_requests and state.erased_at == T0 + timedelta(minutes=9)
    assert state.last_activity_at == T0 + timedelta(minutes=7)
