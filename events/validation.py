"""Turns raw Kafka bytes into a typed event, or an `InvalidEvent` that names the bad field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from events.models import EventData, PrivacyEvent, SettingsChanged
from events.taxonomy import Taxonomy

_ADAPTER: TypeAdapter[PrivacyEvent] = TypeAdapter(PrivacyEvent)


@dataclass(frozen=True)
class InvalidEvent(Exception):
    """Why an input was rejected: the offending field (dotted path) and a readable reason."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


def parse_event(raw: bytes, taxonomies: Mapping[str, Taxonomy]) -> PrivacyEvent:
    """Validate a structured-mode CloudEvent against the contract and its org's taxonomy."""
    event = parse_structure(raw)
    check_taxonomy(event.data, taxonomies)
    return event


def parse_structure(raw: bytes) -> PrivacyEvent:
    """Validate a structured-mode CloudEvent against the wire models only, not the taxonomy
    (which keys exist depends on the org's policy, which a producer need not have)."""
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise _first_error(exc) from None


def check_taxonomy(data: EventData, taxonomies: Mapping[str, Taxonomy]) -> None:
    taxonomy = taxonomies.get(data.org)
    if taxonomy is None:
        known = ", ".join(sorted(taxonomies)) or "none"
        raise InvalidEvent("data.org", f"unknown org {data.org!r} (orgs with a policy: {known})")
    if data.subject.kind not in taxonomy.data_subjects:
        raise InvalidEvent(
            "data.subject.kind", f"unknown fideslang data subject {data.subject.kind!r}"
        )
    for i, key in enumerate(data.categories):
        if key not in taxonomy.data_categories:
            raise InvalidEvent(
                f"data.data_categories[{i}]", f"unknown data category {key!r} for org {data.org!r}"
            )
    if data.use is not None and data.use not in taxonomy.data_uses:
        raise InvalidEvent("data.data_use", f"unknown data use {data.use!r} for org {data.org!r}")
    public = data.settings.public_categories if isinstance(data, SettingsChanged) else None
    for i, key in enumerate(public or []):
        if key not in taxonomy.data_categories:
            raise InvalidEvent(
                f"data.settings.public_categories[{i}]",
                f"unknown data category {key!r} for org {data.org!r}",
            )


def _first_error(exc: ValidationError) -> InvalidEvent:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return InvalidEvent("", f"not valid JSON ({error['ctx'].get('error', 'parse error')})")
    if error["type"] == "dict_type" and not error["loc"]:
        return InvalidEvent("", "a CloudEvent must be a JSON object")
    return InvalidEvent(_field_path(error), _reason(error))


def _field_path(error: ErrorDetails) -> str:
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return "type"
    # The first step of a discriminated union's location is the `type` tag, not a field.
    loc = list(error["loc"])[1:]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "union_tag_not_found":
        return "missing required attribute"
    if kind == "union_tag_invalid":
        return f"unknown event type {error['ctx']['tag']!r}"
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        return "unknown field (not in the event contract)"
    return str(error["msg"])
