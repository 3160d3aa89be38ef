"""The policy file format: one YAML file per org, parsed strictly (unknown keys are errors).

A rule's `when` is a tree of conditions. Each condition is a mapping with exactly one key:
`all`, `any` or `not` to combine, or one of the tests below (fields of the judged event, or facts
of the subject's state before it). Key operands (`use_under`, `recipient_in`, ...) are either a
literal list or `{list: NAME}`, a reference to one of the file's named lists.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from events.models import ActorKind, EventType, LegalBasis, RecipientKind
from streams.rules.durations import Duration

Anchor = Literal["closed_at", "last_activity_or_closed", "erasure_request_opened"]
Unless = Literal["erasure_fulfilled", "legal_hold", "request_fulfilled"]
ConsentStatus = Literal["given", "withdrawn", "objected"]
Severity = Literal["low", "medium", "high", "critical"]

RULE_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")
ORG = re.compile(r"^[a-z][a-z0-9_-]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Operand(_Model):
    """Keys (taxonomy keys or ids) given inline, or by the name of one of the file's lists."""

    keys: tuple[str, ...] | None = None
    list_name: str | None = Field(default=None, alias="list")

    @model_validator(mode="before")
    @classmethod
    def _inline_or_reference(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"keys": tuple(value)}
        if isinstance(value, dict) and set(value) == {"list"}:
            return value
        raise ValueError("expected a list of keys or {list: NAME}")

    def describe(self) -> str:
        return f"list {self.list_name!r}" if self.list_name else ", ".join(self.keys or ())


def _duration(text: str) -> str:
    Duration.parse(text)
    return text


class Condition(_Model):
    """One node of a `when` tree: exactly one of these keys.

    Combinators: `all`, `any` (lists of conditions), `not` (one condition).
    Event tests (false on event types without the field they read; `not` of them is true):
      event: [types]                       the event's type is one of these
      categories_any_under / _all_under    some / every data category is under one of the keys
      use_under / use_not_under            the data use is (not) under one of the keys
      actor_kind: [kinds], actor_in        actor kind; actor id on a list
      actor_is_subject: bool               the actor id is the subject id
      recipient_kind: [kinds]              recipient kind
      recipient_in / recipient_not_in      recipient id (not) on a list
      recipient_country_not_in: [codes]    recipient country outside these ISO codes
      encrypted, safeguard_missing, aggregated, explicit_consent: bool
      legal_basis: [bases]                 the event's basis, else the org's default for the use
    State tests (the subject as it was before the event):
      consent: [given|withdrawn|objected]  the record governing the use (most specific key);
                                           an objection counts only if it covers a category
      profile_visible, auto_share_with_employers: bool   (org default until the subject sets it)
      public_categories_cover: keys        every category is public or under one of the keys
      account_closed_for: "72 hours"       the account closed more than this before the event
      erasure_fulfilled, legal_hold: bool
      deadline_passed: bool                the rule's own deadline passed unmet before the event
    """

    all_: tuple[Condition, ...] | None = Field(default=None, alias="all")
    any_: tuple[Condition, ...] | None = Field(default=None, alias="any")
    not_: Condition | None = Field(default=None, alias="not")
    # Tests of the event.
    event: tuple[EventType, ...] | None = None
    categories_any_under: Operand | None = None
    categories_all_under: Operand | None = None
    use_under: Operand | None = None
    use_not_under: Operand | None = None
    actor_kind: tuple[ActorKind, ...] | None = None
    actor_in: Operand | None = None
    actor_is_subject: StrictBool | None = None
    recipient_kind: tuple[RecipientKind, ...] | None = None
    recipient_in: Operand | None = None
    recipient_not_in: Operand | None = None
    recipient_country_not_in: tuple[str, ...] | None = None
    encrypted: StrictBool | None = None
    safeguard_missing: StrictBool | None = None
    aggregated: StrictBool | None = None
    explicit_consent: StrictBool | None = None
    legal_basis: tuple[LegalBasis, ...] | None = None
    # Tests of the subject's state (before the event).
    consent: tuple[ConsentStatus, ...] | None = None
    profile_visible: StrictBool | None = None
    public_categories_cover: Operand | None = None
    auto_share_with_employers: StrictBool | None = None
    account_closed_for: str | None = None
    erasure_fulfilled: StrictBool | None = None
    legal_hold: StrictBool | None = None
    deadline_passed: StrictBool | None = None

    @field_validator("account_closed_for")
    @classmethod
    def _valid_duration(cls, value: str | None) -> str | None:
        return None if value is None else _duration(value)

    @model_validator(mode="after")
    def _exactly_one_key(self) -> Condition:
        keys = self.model_fields_set
        if len(keys) != 1:
            raise ValueError(f"a condition has exactly one key, got {len(keys)}")
        return self

    @property
    def key(self) -> str:
        """The one key this condition was written with (as in the file)."""
        name = next(iter(self.model_fields_set))
        return type(self).model_fields[name].alias or name

    @property
    def operand(self) -> Any:
        return getattr(self, next(iter(self.model_fields_set)))


class Deadline(_Model):
    after: Anchor
    within: str
    unless: tuple[Unless, ...] = ()

    @field_validator("within")
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        return _duration(value)

    @property
    def duration(self) -> Duration:
        return Duration.parse(self.within)


class Rule(_Model):
    id: str
    severity: Severity
    section: str = Field(min_length=1)
    text: str = Field(min_length=1)
    when: Condition | None = None
    deadline: Deadline | None = None

    @field_validator("id")
    @classmethod
    def _stable_id(cls, value: str) -> str:
        if not RULE_ID.match(value):
            raise ValueError(f"rule id {value!r} must look like 'LX-ADNET-001'")
        return value

    @model_validator(mode="after")
    def _has_a_trigger(self) -> Rule:
        if self.when is None and self.deadline is None:
            raise ValueError("a rule needs `when`, `deadline`, or both")
        return self


class TaxonomyExtensions(_Model):
    data_categories: dict[str, str] = Field(default_factory=dict)
    data_uses: dict[str, str] = Field(default_factory=dict)


class SettingsDefaults(_Model):
    """What a subject's settings are until the subject changes them."""

    profile_visible: StrictBool = True
    auto_share_with_employers: StrictBool = False


class PolicyFile(_Model):
    org: str
    name: str = Field(min_length=1)
    subject_kinds: tuple[str, ...] = Field(min_length=1)
    taxonomy: TaxonomyExtensions = Field(default_factory=TaxonomyExtensions)
    default_legal_basis: dict[str, LegalBasis] = Field(default_factory=dict)
    settings_defaults: SettingsDefaults = Field(default_factory=SettingsDefaults)
    lists: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    @field_validator("org")
    @classmethod
    def _org_key(cls, value: str) -> str:
        if not ORG.match(value):
            raise ValueError(f"org {value!r} must be lower-case letters, digits, '_' or '-'")
        return value
