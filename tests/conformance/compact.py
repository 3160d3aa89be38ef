"""Compact test events (`{at: ..., type: shared, use: ..., recipient: kind:id:CC}`) made real.

Each becomes a full CloudEvent and goes through `parse_event` with the policy's taxonomies, so a
case can only use what a producer could send.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from events.models import EventType, PrivacyEvent
from events.taxonomy import Taxonomy
from events.validation import parse_event

TYPES = {
    "accessed": EventType.DATA_ACCESSED,
    "shared": EventType.DATA_SHARED,
    "consent": EventType.CONSENT_CHANGED,
    "settings": EventType.SETTINGS_CHANGED,
    "account": EventType.ACCOUNT_CHANGED,
    "request_opened": EventType.REQUEST_OPENED,
    "request_fulfilled": EventType.REQUEST_FULFILLED,
    "legal_hold": EventType.LEGAL_HOLD_CHANGED,
}
_RENAMED = {"categories": "data_categories", "use": "data_use", "basis": "legal_basis"}
_ENVELOPE = {"at", "type", "subject", "kind", "id", "source", "org"}


def as_time(value: Any, where: str) -> datetime:
    """A case time: a YAML timestamp or an ISO string, always with a zone."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"{where}: time {value!r} needs a zone (e.g. Z)")
    return moment


def build_events(
    compact: Sequence[Mapping[str, Any]],
    org: str,
    subject_kind: str,
    taxonomies: Mapping[str, Taxonomy],
    prefix: str,
) -> list[PrivacyEvent]:
    return [
        parse_event(
            json.dumps(_cloud_event(item, org, subject_kind, f"{prefix}-{i}")).encode(), taxonomies
        )
        for i, item in enumerate(compact)
    ]


def _cloud_event(item: Mapping[str, Any], org: str, kind: str, default_id: str) -> dict[str, Any]:
    short = item["type"]
    if short not in TYPES:
        raise ValueError(f"{default_id}: unknown event type {short!r} (one of {', '.join(TYPES)})")
    data: dict[str, Any] = {
        "org": item.get("org", org),
        "subject": {"id": item.get("subject", "s1"), "kind": item.get("kind", kind)},
    }
    if short in ("accessed", "shared"):
        data["actor"] = _pair(item.get("actor", "service:app"), ("kind", "id"))
    if short == "shared":
        data["recipient"] = _pair(item["recipient"], ("kind", "id", "country"))
        data["transfer"] = {
            "encrypted": item.get("encrypted", True),
            "safeguard": item.get("safeguard"),
        }
    for key, value in item.items():
        if key in _ENVELOPE or key in ("actor", "recipient", "encrypted", "safeguard"):
            continue
        data[_RENAMED.get(key, key)] = value
    return {
        "specversion": "1.0",
        "id": item.get("id", default_id),
        "source": item.get("source", "/conformance"),
        "type": TYPES[short],
        "time": as_time(item["at"], default_id).isoformat(),
        "data": data,
    }


def _pair(text: str, names: tuple[str, ...]) -> dict[str, str]:
    parts = text.split(":")
    if len(parts) != len(names):
        raise ValueError(f"{text!r} should be {':'.join(names)}")
    return dict(zip(names, parts, strict=True))
