"""Turns raw Kafka bytes into a typed event, or an `InvalidEvent` that names the bad field."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from events.limits import (
    DEFAULT_MAX_AHEAD,
    EARLIEST_EVENT_TIME,
    MAX_EVENT_BYTES,
    MAX_NESTING_DEPTH,
)
from events.models import (
    DATA_MODELS,
    Envelope,
    EventData,
    EventType,
    PrivacyEvent,
    SettingsChanged,
    control_character_reason,
)
from events.taxonomy import Taxonomy

_ADAPTER: TypeAdapter[PrivacyEvent] = TypeAdapter(PrivacyEvent)
_ENVELOPE: TypeAdapter[Envelope] = TypeAdapter(Envelope)
# The models' own validators: `model_validate_json` is a Python call around each.
_DATA_VALIDATORS = {name: model.__pydantic_validator__ for name, model in DATA_MODELS.items()}
_EARLIEST = f"{EARLIEST_EVENT_TIME:%Y-%m-%dT%H:%M:%SZ}"
# How many characters of an offending JSON key or event type a reason quotes.
_QUOTED_CHARS = 64


@dataclass(frozen=True)
class InvalidEvent(Exception):
    """Why an input was rejected: the offending field (dotted path) and a readable reason."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


def parse_event(
    raw: bytes,
    taxonomies: Mapping[str, Taxonomy],
    now: datetime | None = None,
    max_ahead: timedelta = DEFAULT_MAX_AHEAD,
) -> PrivacyEvent:
    """Validate a structured-mode CloudEvent against the contract and its org's taxonomy.

    With `now` (the judging worker's wall clock), `time` may be at most `max_ahead` later.
    """
    event = parse_structure(raw)
    if now is not None:
        check_time(event, now, max_ahead)
    check_taxonomy(event.data, taxonomies)
    return event


def parse_structure(raw: bytes) -> PrivacyEvent:
    """Validate a structured-mode CloudEvent against the wire models only, not the taxonomy
    (which keys exist depends on the org's policy, which a producer need not have)."""
    raw = _without_bom(raw)
    check_shape(raw)
    return validate_json(raw)


def parse_accepted(raw: bytes) -> PrivacyEvent:
    """An event accepted once already (`parse_structure`), e.g. kept to be judged again: its
    shape was checked then, so only the wire models run."""
    return validate_json(_without_bom(raw))


def validate_json(raw: bytes) -> PrivacyEvent:
    """The wire models alone, parsing and validating in one pass: for bytes whose shape is
    known good (`check_shape`), e.g. encoded from a dict, which cannot repeat a key."""
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise _first_error(exc) from None


def validate_data_json(event_type: EventType, raw: bytes) -> EventData:
    """The `data` of an event of `event_type` alone, from its JSON: for an event whose envelope
    is valid by construction (the emitter's typed helpers). Errors name `data.<field>`, as
    `validate_json` does."""
    try:
        data: EventData = _DATA_VALIDATORS[event_type].validate_json(raw)
    except ValidationError as exc:
        raise _first_error(exc, within=("data",)) from None
    return data


def validate_envelope(attributes: Mapping[str, Any]) -> Envelope:
    """The envelope attributes in `attributes` (Python values: a `time` is a datetime) against
    the wire model, without `type` and `data`."""
    try:
        return _ENVELOPE.validate_python(attributes)
    except ValidationError as exc:
        raise _first_error(exc, within=()) from None


def check_time(event: Envelope, now: datetime, max_ahead: timedelta) -> None:
    """Reject an event dated later than `max_ahead` after `now`: one such event would move
    event time ("now" for deadlines) past everyone's deadlines."""
    latest = now + max_ahead
    if event.time > latest:
        raise InvalidEvent(
            "time",
            f"outside the accepted range ({_EARLIEST} to "
            f"{_duration(max_ahead)} after the judging worker's clock, {latest.isoformat()})",
        )


def check_shape(raw: bytes) -> None:
    """The bounds the wire models cannot express: message size, UTF-8, nesting depth and
    unique keys (JSON parsers disagree on which duplicate wins, so the producer's intent is
    unknown)."""
    check_size(raw)
    try:
        text = raw.decode()
    except UnicodeDecodeError as error:
        raise InvalidEvent(
            "", f"not valid UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start})"
        ) from None
    document = _unique_keys_document(raw, text)
    # A container's depth is at most the number of brackets: most events need no walk.
    if document is not None and raw.count(b"{") + raw.count(b"[") > MAX_NESTING_DEPTH:
        _check_depth(document)


def check_encoded_shape(raw: bytes) -> None:
    """The bounds of `check_shape` that JSON encoded by orjson from a dict can break: size and
    nesting depth. Its keys are unique (a dict's) and its text valid UTF-8 by construction."""
    check_size(raw)
    if raw.count(b"{") + raw.count(b"[") > MAX_NESTING_DEPTH:
        _check_depth(orjson.loads(raw))


def check_size(raw: bytes) -> None:
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(
            "", f"message of {len(raw)} bytes exceeds the limit of {MAX_EVENT_BYTES} bytes"
        )


def _unique_keys_document(raw: bytes, text: str) -> Any:
    """The parsed document, or None if it is not JSON (the wire models then say why).

    orjson keeps one value of a repeated key, like every fast parser. Each key is a string
    literal, so the document re-encoded has fewer string delimiters than `raw` exactly when a
    key was repeated: two counts instead of a second, hook-calling parse of every event.
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # NaN, a number beyond a double, nesting past orjson's limit, a lone surrogate: the
        # standard parser accepts these, so the wire models get to name the problem.
        return _exact_unique_keys_document(text)
    if _string_delimiters(orjson.dumps(document)) != _string_delimiters(raw):
        return _exact_unique_keys_document(text)  # raises, naming the repeated key
    return document


def _string_delimiters(json_bytes: bytes) -> int:
    """The quotes that open or close a string in valid JSON (not the escaped ones inside)."""
    if b"\\" not in json_bytes:
        return json_bytes.count(b'"')
    # Outside strings valid JSON has no backslash; inside, escapes read left to right just as
    # `replace` removes pairs, so what is left before a quote is the quote's own escape.
    unpaired = json_bytes.replace(b"\\\\", b"")
    return unpaired.count(b'"') - unpaired.count(b'\\"')


def _exact_unique_keys_document(text: str) -> Any:
    try:
        return _UNIQUE_KEYS.decode(text)
    except _DuplicateKey as duplicate:
        raise InvalidEvent(_duplicate_path(text), _duplicate_reason(duplicate.key)) from None
    except RecursionError:
        raise _too_deep("") from None
    except ValueError:
        return None


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
    use = data.use
    if use is not None and use not in taxonomy.data_uses:
        raise InvalidEvent("data.data_use", f"unknown data use {use!r} for org {data.org!r}")
    public = data.settings.public_categories if isinstance(data, SettingsChanged) else None
    for i, key in enumerate(public or []):
        if key not in taxonomy.data_categories:
            raise InvalidEvent(
                f"data.settings.public_categories[{i}]",
                f"unknown data category {key!r} for org {data.org!r}",
            )


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) < len(pairs):
        raise _DuplicateKey(_first_duplicate(pairs))
    return document


def _first_duplicate(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no duplicate key among the pairs")


class _DuplicatesMarked(dict[str, Any]):
    """An object that had a duplicate key, found again by walking the document."""

    key: str


def _marking_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) == len(pairs):
        return document
    marked = _DuplicatesMarked(document)
    marked.key = _first_duplicate(pairs)
    return marked


def _ignored(text: str) -> None:
    # Values are the wire models' business; not converting numbers also spares a 4,300-digit
    # integer its conversion limit.
    return None


_UNIQUE_KEYS = json.JSONDecoder(
    object_pairs_hook=_unique_object, parse_int=_ignored, parse_float=_ignored
)
_MARKING_KEYS = json.JSONDecoder(
    object_pairs_hook=_marking_object, parse_int=_ignored, parse_float=_ignored
)


def _duplicate_path(text: str) -> str:
    """The dotted path of the first duplicate key (re-parsed: only for rejected inputs)."""
    pending: list[tuple[Any, str]] = [(_MARKING_KEYS.decode(text), "")]
    while pending:
        node, path = pending.pop()
        if isinstance(node, _DuplicatesMarked):
            return _join(path, node.key)
        if isinstance(node, dict):
            pending.extend((value, _join(path, key)) for key, value in node.items())
        elif isinstance(node, list):
            pending.extend((value, f"{path}[{i}]") for i, value in enumerate(node))
    raise AssertionError("a duplicate key was reported but not found")


def _duplicate_reason(key: str) -> str:
    return f"duplicate key {_quoted(key)} in one JSON object (which value counts is ambiguous)"


def _quoted(text: str) -> str:
    # An offending key or tag is quoted, but never at a length that would bury the reason.
    cut = len(text) > _QUOTED_CHARS
    return repr(text[:_QUOTED_CHARS]) + ("..." if cut else "")


def _check_depth(document: Any) -> None:
    pending: list[tuple[Any, int, str]] = [(document, 1, "")]
    while pending:
        node, depth, field = pending.pop()
        if isinstance(node, dict):
            children: Iterable[tuple[Any, Any]] = node.items()
        elif isinstance(node, list):
            children = enumerate(node)
        else:
            continue
        if depth > MAX_NESTING_DEPTH:
            raise _too_deep(field)
        # The field named is the top-level attribute that holds the deep value.
        pending.extend((value, depth + 1, field or str(key)) for key, value in children)


def _too_deep(field: str) -> InvalidEvent:
    return InvalidEvent(field, f"nested deeper than the limit of {MAX_NESTING_DEPTH} levels")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _without_bom(raw: bytes) -> bytes:
    # RFC 8259 lets a parser ignore a byte order mark; some Windows tools write one.
    return raw[len(codecs.BOM_UTF8) :] if raw.startswith(codecs.BOM_UTF8) else raw


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _first_error(exc: ValidationError, within: tuple[str, ...] | None = None) -> InvalidEvent:
    """The first error, its field path prefixed with `within` (the path of what was validated);
    without it, a whole event's error, located from its union's `type` tag."""
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return InvalidEvent("", f"not valid JSON ({error['ctx'].get('error', 'parse error')})")
    if within is None and error["type"] == "dict_type" and not error["loc"]:
        return InvalidEvent("", "a CloudEvent must be a JSON object")
    return InvalidEvent(_field_path(error, within), _reason(error))


def _field_path(error: ErrorDetails, within: tuple[str, ...] | None) -> str:
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return "type"
    # The first step of a discriminated union's location is the `type` tag, not a field.
    loc = list(error["loc"])[1:] if within is None else [*within, *error["loc"]]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "union_tag_not_found":
        return "missing required attribute"
    if kind == "union_tag_invalid":
        return f"unknown event type {_quoted(str(error['ctx']['tag']))}"
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        return "unknown field (not in the event contract)"
    if kind in ("string_too_long", "too_long"):
        return _too_long(error)
    if kind == "string_pattern_mismatch":
        return control_character_reason(str(error["input"]), str(error["ctx"]["pattern"]))
    if kind == "greater_than_equal" and error["loc"][-1] == "time":
        return f"outside the accepted range (not before {_EARLIEST})"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return str(error["msg"])


def _too_long(error: ErrorDetails) -> str:
    ctx = error["ctx"]
    # A secret string (the subject id) reports itself as a "Value" of "items".
    unit = "items" if ctx.get("field_type") == "List" else "characters"
    return f"longer than the limit of {ctx['max_length']} {unit}"
