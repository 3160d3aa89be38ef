"""CloudEvents 1.0 envelope and the `data` shape of each privacy event type (event-contract.md)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

import pycountry
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from events.tags import Personal

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
NonEmptyStr = Annotated[str, Field(min_length=1)]


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
    id: Personal = Field(min_length=1)
    kind: NonEmptyStr


class Actor(_Strict):
    kind: ActorKind
    id: NonEmptyStr


class Recipient(_Strict):
    id: NonEmptyStr
    kind: RecipientKind
    country: str

    @field_validator("country")
    @classmethod
    def _iso_country(cls, value: str) -> str:
        if len(value) != 2 or pycountry.countries.get(alpha_2=value) is None:
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
        return value


class Transfer(_Strict):
    encrypted: bool
    safeguard: str | None = None


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
    data_categories: list[NonEmptyStr] = Field(min_length=1)
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
    data_categories: list[NonEmptyStr] | None = None

    @property
    def categories(self) -> list[str]:
        return self.data_categories or []

    @property
    def use(self) -> str | None:
        return self.data_use


class PrivacySettings(_Strict):
    profile_visible: bool | None = None
    public_categories: list[NonEmptyStr] | None = None
    auto_share_with_employers: bool | None = None


class SettingsChanged(EventData):
    settings: PrivacySettings


class AccountChanged(EventData):
    status: Literal["created", "closed", "reopened", "active"]


class RequestChanged(EventData):
    request_id: NonEmptyStr
    right: Right


class LegalHoldChanged(EventData):
    status: Literal["placed", "released"]
    reason: NonEmptyStr


class _Envelope(BaseModel):
    # CloudEvents allows extension attributes, so unknown envelope keys are ignored, not errors.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    specversion: Literal["1.0"]
    id: NonEmptyStr
    source: NonEmptyStr
    time: AwareDatetime
    datacontenttype: Literal["application/json"] | None = None

    @property
    def event_time(self) -> datetime:
        return self.time


class DataAccessedEvent(_Envelope):
    type: Literal[EventType.DATA_ACCESSED]
    data: DataAccessed


class DataSharedEvent(_Envelope):
    type: Literal[EventType.DATA_SHARED]
    data: DataShared


class ConsentChangedEvent(_Envelope):
    type: Literal[EventType.CONSENT_CHANGED]
    data: ConsentChanged


class SettingsChangedEvent(_Envelope):
    type: Literal[EventType.SETTINGS_CHANGED]
    data: SettingsChanged


class AccountChangedEvent(_Envelope):
    type: Literal[EventType.ACCOUNT_CHANGED]
    data: AccountChanged


class RequestOpenedEvent(_Envelope):
    type: Literal[EventType.REQUEST_OPENED]
    data: RequestChanged


class RequestFulfilledEvent(_Envelope):
    type: Literal[EventType.REQUEST_FULFILLED]
    data: RequestChanged


class LegalHoldChangedEvent(_Envelope):
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
