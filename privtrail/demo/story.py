"""What the demo's stories are made of: the messages, the story recorder, the shared vocabulary,
and the scenario record each org's module declares its stories with."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar, get_args

from events.emitter import build_event, encode_event, event_key
from events.models import ActorKind, EventType, LegalBasis, PrivacyEvent, RecipientKind, Right

Defect = Literal[
    "bad JSON",
    "unknown event type",
    "unknown taxonomy key",
    "wrong field type",
    "missing attribute",
]
DEFECTS: tuple[Defect, ...] = get_args(Defect)

T = TypeVar("T")
Actor = tuple[ActorKind, str]


@dataclass(frozen=True)
class DemoEvent:
    """One Kafka message of the demo: raw key and value, plus the event model when valid."""

    key: bytes | None
    value: bytes
    time: datetime
    scenario: str
    event: PrivacyEvent | None = None
    # For a malformed input: what is wrong with it (one of `DEFECTS`).
    defect: Defect | None = None


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    org: str
    description: str
    # Rule ids this scenario breaks; empty for compliant traffic.
    violates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipient:
    id: str
    kind: RecipientKind
    country: str
    safeguard: str | None = None


class Story:
    """One subject's events, in time order, recorded as a scenario plays them."""

    def __init__(
        self,
        rng: random.Random,
        scenario: str,
        org: str,
        subject_kind: str,
        start: datetime,
        *,
        dry: bool,
        salt: str,
        subject_id: str | None = None,
    ) -> None:
        self.rng = rng
        self.salt = salt
        self.scenario = scenario
        self.org = org
        self.subject_kind = subject_kind
        self.subject_id = subject_id or f"{_ID_PREFIX[org, subject_kind]}_{self.fresh(64):016x}"
        self.now = start
        # A dry run only counts events and measures the story, which is all planning needs.
        self.dry = dry
        self.length = 0
        self.events: list[DemoEvent] = []

    def fresh(self, bits: int) -> int:
        """`bits` random bits for an id, new for each salt. The draw from `rng` is the same
        whatever the salt, so a story plays out alike in every run, under new ids."""
        drawn = self.rng.getrandbits(bits)
        salted = hashlib.blake2b(f"{self.salt}/{drawn:x}".encode(), digest_size=bits // 8)
        return int.from_bytes(salted.digest())

    def new_event_id(self) -> str:
        return str(uuid.UUID(int=self.fresh(128), version=4))

    def wait(self, low: timedelta, high: timedelta) -> None:
        seconds = self.rng.uniform(low.total_seconds(), high.total_seconds())
        self.now += timedelta(seconds=max(1, round(seconds)))

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def pick(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)

    def someone(self, prefix: str) -> str:
        """The id of another person (a member, a recruiter), not the subject."""
        return f"{prefix}_{self.rng.getrandbits(32):08x}"

    def member(self) -> Actor:
        """Another LinkXUP member, viewing the subject's profile."""
        return ("member", self.someone("lxm"))

    def account(self, status: str) -> None:
        self._record(EventType.ACCOUNT_CHANGED, "accounts", {"status": status})

    def consent(self, use: str, status: str, *, via: str = "consent-screen") -> None:
        self._record(EventType.CONSENT_CHANGED, via, {"data_use": use, "status": status})

    def settings(self, **settings: bool | Sequence[str]) -> None:
        values = {k: list(v) if isinstance(v, Sequence) else v for k, v in settings.items()}
        self._record(EventType.SETTINGS_CHANGED, "privacy-settings", {"settings": values})

    def access(
        self, via: str, actor: Actor, categories: Sequence[str], use: str, basis: LegalBasis
    ) -> None:
        self._record(EventType.DATA_ACCESSED, via, _use(actor, categories, use, basis))

    def share(
        self,
        via: str,
        actor: Actor,
        categories: Sequence[str],
        use: str,
        basis: LegalBasis,
        to: Recipient,
        *,
        encrypted: bool = True,
        aggregated: bool = False,
        explicit_consent: bool = False,
    ) -> None:
        data = {
            **_use(actor, categories, use, basis),
            "recipient": {"id": to.id, "kind": to.kind, "country": to.country},
            "transfer": {"encrypted": encrypted, "safeguard": to.safeguard},
            "aggregated": aggregated,
            "explicit_consent": explicit_consent,
        }
        self._record(EventType.DATA_SHARED, via, data)

    def request(self, right: Right) -> str:
        request_id = f"dsr-{self.rng.getrandbits(40):010x}"
        self._record(
            EventType.REQUEST_OPENED, "privacy-requests", {"request_id": request_id, "right": right}
        )
        return request_id

    def fulfil(self, request_id: str, right: Right) -> None:
        data = {"request_id": request_id, "right": right}
        self._record(EventType.REQUEST_FULFILLED, "privacy-requests", data)

    def hold(self, status: str, reason: str) -> None:
        self._record(EventType.LEGAL_HOLD_CHANGED, "legal", {"status": status, "reason": reason})

    def subject(self) -> dict[str, str]:
        return {"id": self.subject_id, "kind": self.subject_kind}

    def _record(self, event_type: EventType, service: str, data: dict[str, Any]) -> None:
        event_id = self.new_event_id()
        self.length += 1
        if not self.dry:
            event = build_event(
                event_type,
                source=f"/{self.org}/{service}",
                data={"org": self.org, "subject": self.subject(), **data},
                event_id=event_id,
                time=self.now,
            )
            self.events.append(
                DemoEvent(event_key(event), encode_event(event), self.now, self.scenario, event)
            )
        # Two events of one subject never share a timestamp, so their order is unambiguous.
        self.now += timedelta(seconds=1)


def _use(actor: Actor, categories: Sequence[str], use: str, basis: LegalBasis) -> dict[str, Any]:
    return {
        "actor": {"kind": actor[0], "id": actor[1]},
        "data_categories": list(categories),
        "data_use": use,
        "legal_basis": basis,
    }


_ID_PREFIX = {
    ("linkxup", "customer"): "lxm",
    ("linkxup", "visitor"): "lxv",
    ("xpertaize", "job_applicant"): "xpa",
    ("connectx", "customer"): "cxc",
}

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SCC = "standard_contractual_clauses"

# --- Vocabulary ----------------------------------------------------------------------------

CONSENT: LegalBasis = "consent"
CONTRACT: LegalBasis = "contract"
LI: LegalBasis = "legitimate_interests"
TARGETED = "marketing.advertising.first_party.targeted"
EMAIL = "marketing.communications.email"
PAYMENT = "essential.service.payment_processing"
SUPPORT = "essential.service.operations.support"
OPERATIONS = "essential.service.operations"
RECRUITMENT = "employment.recruitment"
PROFILED = "personalize.content.profiled"
STATS = "analytics.reporting"
BROWSING = "user.behavior.browsing_history"
PURCHASES = "user.behavior.purchase_history"
CARD = "user.financial.credit_card"
CV = "user.professional.cv"
SALARY = "user.professional.salary_expectation"
WHATSAPP = "user.content.private.whatsapp_message"
NAME_EMAIL = ("user.name", "user.contact.email")
SERVICE = "essential.service"

# --- Scenarios -----------------------------------------------------------------------------

# XpertAIze keeps data up to 36 months after the last activity. Its stories start late enough
# to stay inside that window until the run ends, except the one that is meant to cross it.
XA_RETENTION_SAFE = timedelta(days=120)
DEADLINE_MARGIN = timedelta(days=32)
_ORGS = {"lx": "linkxup", "xa": "xpertaize", "cx": "connectx"}


@dataclass(frozen=True)
class Scenario:
    info: ScenarioInfo
    subject_kind: str
    play: Callable[[Story], None]
    weight: float
    # Window for the story's start, from the run's start, and the time that must remain between
    # its last event and the run's end (so the deadline it misses passes within the run).
    not_before: timedelta
    not_after: timedelta | None
    margin: timedelta


def scenario(
    play: Callable[[Story], None],
    *violates: str,
    weight: float = 0.0,
    subject_kind: str = "",
    not_after: timedelta | None = None,
    margin: timedelta = timedelta(0),
) -> Scenario:
    """A scenario named after its function (`lx_member` is `lx-member` of linkxup)."""
    name = play.__name__.strip("_").replace("_", "-")
    org = _ORGS[name[:2]]
    kind = subject_kind or ("job_applicant" if org == "xpertaize" else "customer")
    late = org == "xpertaize" and not_after is None
    info = ScenarioInfo(name, org, (play.__doc__ or "").strip(), violates)
    not_before = XA_RETENTION_SAFE if late else timedelta(0)
    return Scenario(info, kind, play, weight, not_before, not_after, margin)
