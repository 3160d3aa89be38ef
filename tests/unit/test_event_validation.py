"""The wire contract: what is accepted, and what is rejected with a reason naming the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from events.models import DataSharedEvent
from events.taxonomy import Taxonomy
from events.validation import InvalidEvent, parse_event

TAXONOMIES = {
    "connectx": Taxonomy.default().extend(
        data_categories={"user.content.private.whatsapp_message": "user.content.private"}
    ),
    "xpertaize": Taxonomy.default(),
}

SHARED: dict[str, Any] = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "/connectx/ads",
    "type": "privacy.data.shared",
    "time": "2026-03-01T10:00:00+01:00",
    "traceparent": "00-abc-def-01",  # a CloudEvents extension attribute: allowed
    "data": {
        "org": "connectx",
        "subject": {"id": "cust-42", "kind": "customer"},
        "actor": {"kind": "service", "id": "ads-exporter"},
        "data_categories": ["user.content.private.whatsapp_message"],
        "data_use": "marketing.advertising.third_party.targeted",
        "recipient": {"id": "adco", "kind": "ad_network", "country": "FR"},
        "transfer": {"encrypted": True, "safeguard": None},
    },
}


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def with_data(**changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(SHARED)
    event["data"].update(changes)
    return event


def test_a_valid_share_parses_with_defaults() -> None:
    event = parse_event(encode(SHARED), TAXONOMIES)
    assert isinstance(event, DataSharedEvent)
    assert event.data.aggregated is False and event.data.explicit_consent is False
    assert event.time.utcoffset() is not None
    assert event.data.subject.id.get_secret_value() == "cust-42"


def test_subject_id_never_shows_in_repr_but_travels_on_the_wire() -> None:
    event = parse_event(encode(SHARED), TAXONOMIES)
    assert "cust-42" not in repr(event) and "cust-42" not in str(event)
    assert '"id":"cust-42"' in event.model_dump_json()


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (b"{not json", "", "not valid JSON"),
        (b"[1, 2]", "", "must be a JSON object"),
        (encode({**SHARED, "type": "privacy.data.sold"}), "type", "unknown event type"),
        (encode({k: v for k, v in SHARED.items() if k != "type"}), "type", "missing"),
        (encode({k: v for k, v in SHARED.items() if k != "id"}), "id", "missing"),
        (encode({**SHARED, "specversion": "0.3"}), "specversion", "1.0"),
        (encode({**SHARED, "time": "2026-03-01T10:00:00"}), "time", "timezone"),
        (encode(with_data(data_categories=[])), "data.data_categories", "at least 1"),
        (encode(with_data(data_categories=["user.nope"])), "data.data_categories[0]", "user.nope"),
        (encode(with_data(data_use="marketing.spam")), "data.data_use", "marketing.spam"),
        (encode(with_data(org="acme")), "data.org", "unknown org"),
        (encode(with_data(legal_basis="because")), "data.legal_basis", "consent"),
        (encode(with_data(aggregated="yes")), "data.aggregated", "boolean"),
        (encode(with_data(colour="red")), "data.colour", "unknown field"),
        (encode(with_data(subject={"id": "x", "kind": "martian"})), "data.subject.kind", "martian"),
        (
            encode(with_data(recipient={"id": "r", "kind": "ad_network", "country": "XX"})),
            "data.recipient.country",
            "ISO 3166",
        ),
        (encode(with_data(transfer={"safeguard": None})), "data.transfer.encrypted", "missing"),
    ],
)
def test_bad_input_is_rejected_naming_the_field(raw: bytes, field: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, TAXONOMIES)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_org_extensions_are_per_org() -> None:
    event = with_data(org="xpertaize", subject={"id": "a", "kind": "job_applicant"})
    with pytest.raises(InvalidEvent, match="whatsapp_message"):
        parse_event(encode(event), TAXONOMIES)


def test_settings_public_categories_are_taxonomy_checked() -> None:
    event = {
        **SHARED,
        "type": "privacy.settings.changed",
        "data": {
            "org": "connectx",
            "subject": {"id": "a", "kind": "customer"},
            "settings": {"public_categories": ["user.name", "user.bogus"]},
        },
    }
    with pytest.raises(InvalidEvent) as caught:
        parse_event(encode(event), TAXONOMIES)
    assert caught.value.field == "data.settings.public_categories[1]"
