"""CloudEvents 1.0 envelope and the `data` shape of each privacy event type (event-contract.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from functools import cache, lru_cache
from typing import Annotated, Any, Literal, get_args

import pycountry
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from events.limits import (
    EARLIEST_EVENT_TIME,
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    MAX_URI_CHARS,
)
from events.tags import Personal, reveal

CONTENT_TYPE = "application/cloudevents+json"

LegalBasis = Literal[
    "consent",
    "contract",
    "legitimate_interests",
    "legal_obligation",
    "vital_interests",
    "public_interest",
]
ActorKind = Literal["service", "employee", "member", "visitor", "service_provider", "third_party"]
RecipientKind = Literal[
    "employer",
    "ad_network",
    "service_provider",
    "affiliate",
    "business_partner",
    "research_partner",
    "authority",
    "buyer",
    "third_party",
]
Right = Literal["erasure", "access", "rectification", "portability", "restriction", "objection"]

# Characters no identifier may hold: control characters (Unicode category Cc: NUL, newline,
# escape...) and bidirectional-text controls, which make an id display as another one (U+202E
# shows "ab\u202edc" as "abcd"). Free text may hold tabs and line breaks. One syntax serves
# Python's `re` and the Rust regex engine that checks the patterns while parsing.
_IDENTIFIER_CONTROLS = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_TEXT_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
IDENTIFIER_PATTERN = f"^[^{_IDENTIFIER_CONTROLS}]*$"
TEXT_PATTERN = f"^[^{_TEXT_CONTROLS}]*$"
_IDENTIFIER_CONTROL = re.compile(f"[{_IDENTIFIER_CONTROLS}]")
_TEXT_CONTROL = re.compile(f"[{_TEXT_CONTROLS}]")
_COUNTRY_CODE = re.compile("[A-Z]{2}")


def control_character_reason(value: str, pattern: str) -> str:
    """Why `value` does not match IDENTIFIER_PATTERN or TEXT_PATTERN; never echoes the value,
    which may be a subject id."""
    text = pattern == TEXT_PATTERN
    found = (_TEXT_CONTROL if text else _IDENTIFIER_CONTROL).search(value)
    char = f"U+{ord(found.group()):04X}" if found else "a control character"
    if text:
        return f"contains {char}: text may hold tabs and line breaks, no other control characters"
    return f"contains {char}: identifiers must be printable, without bidirectional-text controls"


def _plain_personal_identifier(value: SecretStr) -> SecretStr:
    # The pattern constraint does not apply to secret strings.
    if _IDENTIFIER_CONTROL.search(value.get_secret_value()):
        raise ValueError(control_character_reason(value.get_secret_value(), IDENTIFIER_PATTERN))
    return value


NonEmptyStr = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
Identifier = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN)
]


def _checked_as_text(source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
    """From JSON (every event), the identifier's constraints checked on the text by
    pydantic-core before it becomes a secret: checked on the secret they run in Python, a call
    each. The same checks and errors; Python values go through the checks on the secret."""
    on_secret = handler(source)
    return core_schema.json_or_python_schema(
        json_schema=core_schema.no_info_after_validator_function(
            SecretStr,
            core_schema.str_schema(
                min_length=1, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN
            ),
        ),
        python_schema=on_secret,
        serialization=core_schema.plain_serializer_function_ser_schema(
            reveal, return_schema=core_schema.str_schema(), when_used="json"
        ),
    )


PersonalIdentifier = Annotated[
    Personal,
    Field(min_length=1, max_length=MAX_ID_CHARS),
    AfterValidator(_plain_personal_identifier),
    GetPydanticSchema(_checked_as_text),
]
Uri = Annotated[str, Field(min_length=1, max_length=MAX_URI_CHARS, pattern=IDENTIFIER_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS, pattern=TEXT_PATTERN)]
Categories = Annotated[list[NonEmptyStr], Field(max_length=MAX_LIST_ITEMS)]


@lru_cache(maxsize=64)
def _zone(offset: timedelta) -> timezone:
    return UTC if not offset else timezone(offset)


def _shared_zone(value: datetime) -> datetime:
    # The parser gives every datetime a time zone object of its own, and comparing two aware
    # datetimes whose zones are different objects calls both zones' `utcoffset()` (about 15
    # times slower); the judge compares event times all the time. The same offset as a shared
    # zone: the same instant, the same ISO text.
    offset = value.utcoffset()
    assert offset is not None  # AwareDatetime
    zone = _zone(offset)
    try:
        # To a zone of the same offset `astimezone` keeps the wall time, and costs a quarter
        # of `replace`; but it goes through UTC, which may lie past year 9999.
        return value.astimezone(zone)
    except OverflowError:
        return value.replace(tzinfo=zone)


# The upper bound depends on the judging worker's clock: `parse_event` checks it.
EventTime = Annotated[AwareDatetime, Field(ge=EARLIEST_EVENT_TIME), AfterValidator(_shared_zone)]


class EventType(StrEnum):
    DATA_ACCESSED = "privacy.data.accessed"
    DATA_SHARED = "privacy.data.shared"
    CONSENT_CHANGED = "privacy.consent.changed"
    SETTINGS_CHANGED = "privacy.settings.changed"
    ACCOUNT_CHANGED = "privacy.account.changed"
    REQUEST_OPENED = "privacy.request.opened"
    REQUEST_FULFILLED = "privacy.request.fulfilled"
    LEGAL_HOLD_CHANGED = "privacy.legal_hold.changed"


class _Strict(BaseModel):
    # Strict: a wrong JSON type ("true" for a bool, 3 for a string) is an error, not a coercion.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Subject(_Strict):
    id: PersonalIdentifier
    kind: NonEmptyStr


class Actor(_Strict):
    kind: ActorKind
    id: Identifier


class Recipient(_Strict):
    id: Identifier
    kind: RecipientKind
    country: str

    @field_validator("country")
    @classmethod
    def _iso_country(cls, value: str) -> str:
        # Upper case only, as ISO 3166-1 writes them: rules compare codes as given, so "fr" must
        # not slip past a rule about "FR".
        if not _COUNTRY_CODE.fullmatch(value):
            raise ValueError("must be an ISO 3166-1 alpha-2 country code: two upper-case letters")
        if not _is_country(value):
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
        return value


# Unbounded: only two upper-case letters reach it, so at most 676 codes. pycountry's look-up
# costs more than the rest of a shared event's validation of the recipient.
@cache
def _is_country(code: str) -> bool:
    return pycountry.countries.get(alpha_2=code) is not None


class Transfer(_Strict):
    encrypted: bool
    safeguard: Annotated[str, Field(max_length=MAX_NAME_CHARS)] | None = None


class EventData(_Strict):
    org: NonEmptyStr
    subject: Subject

    # Uniform views of the taxonomy keys an event carries, whatever its type.
    @property
    def categories(self) -> list[str]:
        return []

    @property
    def use(self) -> str | None:
        return None


class DataAccessed(EventData):
    actor: Actor
    data_categories: Categories = Field(min_length=1)
    data_use: NonEmptyStr
    legal_basis: LegalBasis | None = None

    @property
    def categories(self) -> list[str]:
        return self.data_categories

    @property
    def use(self) -> str | None:
        return self.data_use


class DataShared(DataAccessed):
    recipient: Recipient
    transfer: Transfer
    aggregated: bool = False
    explicit_consent: bool = False


class ConsentChanged(EventData):
    data_use: NonEmptyStr
    status: Literal["given", "withdrawn", "objected"]
    data_categories: Categories | None = None

    @property
    def categories(self) -> list[str]:
        return self.data_categories or []

    @property
    def use(self) -> str | None:
        return self.data_use


class PrivacySettings(_Strict):
    profile_visible: bool | None = None
    public_categories: Categories | None = None
    auto_share_with_employers: bool | None = None

    @model_validator(mode="after")
    def _something_changed(self) -> PrivacySettings:
        # A settings change that changes nothing is a producer bug worth seeing, not a no-op.
        names = type(self).model_fields
        if all(getattr(self, name) is None for name in names):
            raise ValueError(f"no setting given (at least one of {', '.join(names)})")
        return self


class SettingsChanged(EventData):
    settings: PrivacySettings


class AccountChanged(EventData):
    status: Literal["created", "closed", "reopened", "active"]


class RequestChanged(EventData):
    request_id: Identifier
    right: Right


class LegalHoldChanged(EventData):
    status: Literal["placed", "released"]
    reason: Text


class Envelope(BaseModel):
    """The CloudEvents attributes every event has; `type` and `data` are its subclasses'."""

    # CloudEvents allows extension attributes, so unknown envelope keys are ignored, not errors.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    specversion: Literal["1.0"]
    id: Identifier
    source: Uri
    time: EventTime
    datacontenttype: Literal["application/json"] | None = None

    @property
    def event_time(self) -> datetime:
        return self.time


class DataAccessedEvent(Envelope):
    type: Literal[EventType.DATA_ACCESSED]
    data: DataAccessed


class DataSharedEvent(Envelope):
    type: Literal[EventType.DATA_SHARED]
    data: DataShared


class ConsentChangedEvent(Envelope):
    type: Literal[EventType.CONSENT_CHANGED]
    data: ConsentChanged


class SettingsChangedEvent(Envelope):
    type: Literal[EventType.SETTINGS_CHANGED]
    data: SettingsChanged


class AccountChangedEvent(Envelope):
    type: Literal[EventType.ACCOUNT_CHANGED]
    data: AccountChanged


class RequestOpenedEvent(Envelope):
    type: Literal[EventType.REQUEST_OPENED]
    data: RequestChanged


class RequestFulfilledEvent(Envelope):
    type: Literal[EventType.REQUEST_FULFILLED]
    data: RequestChanged


class LegalHoldChangedEvent(Envelope):
    type: Literal[EventType.LEGAL_HOLD_CHANGED]
    data: LegalHoldChanged


PrivacyEvent = Annotated[
    DataAccessedEvent
    | DataSharedEvent
    | ConsentChangedEvent
    | SettingsChangedEvent
    | AccountChangedEvent
    | RequestOpenedEvent
    | RequestFulfilledEvent
    | LegalHoldChangedEvent,
    Field(discriminator="type"),
]


def _data_models() -> dict[str, type[EventData]]:
    """Event type -> the model of its `data`, read off the `PrivacyEvent` union."""
    union = get_args(PrivacyEvent)[0]
    models = {}
    for envelope in get_args(union):
        (event_type,) = get_args(envelope.model_fields["type"].annotation)
        models[str(event_type)] = envelope.model_fields["data"].annotation
    return models


# Keyed by the type's text: an `EventType` finds its entry too.
DATA_MODELS = _data_models()
