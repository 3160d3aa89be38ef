"""A deterministic demo workload: the traffic of the three reference orgs' services.

Each subject's story builds up state in a plausible order (account, consent screen, settings,
then months of accesses and shares; some close their account, ask for erasure, get a legal hold,
withdraw a consent and give it again). Most stories are compliant. A configurable share are
violating stories that, together, break every rule of the reference policies, and a small share
of inputs are malformed, to show dead-lettering.

Event time follows a simulated clock spanning `DEMO_SPAN` from `start`, long enough for every
deadline rule (72 hours, 30 days, 36 months) to be crossed within one run. Events are yielded in
event-time order, so the pipeline's "now" (the highest event time seen) advances as it would
live. Once the pipeline has caught up it uses the wall clock instead, so start a demo at
`default_start()` to make the simulated history end at the present.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, get_args

from events.emitter import Emitter, build_event, encode_event, event_key
from events.models import ActorKind, EventType, LegalBasis, PrivacyEvent, RecipientKind, Right

DEMO_SPAN = timedelta(days=1140)
DEFAULT_VIOLATION_SHARE = 0.02
DEFAULT_MALFORMED_SHARE = 0.005
# Large enough for one violating story of every kind besides the compliant traffic.
FULL_COVERAGE_COUNT = 2000

MALFORMED = "malformed-input"
FILLER = "cx-long-standing-customer"
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


def default_start(now: datetime | None = None) -> datetime:
    """The start that makes a demo's simulated history end at `now` (default: the wall clock)."""
    return (now or datetime.now(UTC)).replace(microsecond=0) - DEMO_SPAN


def scenario_catalog() -> list[ScenarioInfo]:
    """Every story the demo tells, with the rule ids each violating one breaks."""
    return [s.info for s in (*_COMPLIANT, *_VIOLATING)]


def demo_events(
    seed: int,
    count: int,
    start: datetime,
    *,
    violation_share: float = DEFAULT_VIOLATION_SHARE,
    malformed_share: float = DEFAULT_MALFORMED_SHARE,
) -> Iterator[DemoEvent]:
    """`count` demo messages in event-time order; the same arguments give the same messages.

    Violating stories take at least `violation_share` of the events and, when `count` allows
    (from about `FULL_COVERAGE_COUNT`), include one story for every violating scenario.
    About `malformed_share` of the messages are malformed.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    for name, share in (("violation_share", violation_share), ("malformed_share", malformed_share)):
        if not 0 <= share < 1:
            raise ValueError(f"{name} must be in [0, 1), got {share}")
    plans = _Planner(random.Random(seed), start, count).plan(violation_share, malformed_share)
    return _in_time_order(plans)


def send_demo(
    emitter: Emitter,
    events: Iterable[DemoEvent],
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send demo messages verbatim (malformed ones too) and flush; returns how many were sent.

    `on_sent` is called after each message with the number sent so far. Raises `EmitError` if
    any message was not delivered.
    """
    sent = 0
    for demo_event in events:
        emitter.send_raw(demo_event.key, demo_event.value)
        sent += 1
        if on_sent is not None:
            on_sent(sent)
    emitter.flush()
    return sent


# --- Stories -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recipient:
    id: str
    kind: RecipientKind
    country: str
    safeguard: str | None = None


class _Story:
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
    ) -> None:
        self.rng = rng
        self.scenario = scenario
        self.org = org
        self.subject_kind = subject_kind
        self.subject_id = f"{_ID_PREFIX[org, subject_kind]}_{rng.getrandbits(64):016x}"
        self.now = start
        # A dry run only counts events and measures the story, which is all planning needs.
        self.dry = dry
        self.length = 0
        self.events: list[DemoEvent] = []

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
        to: _Recipient,
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

    def _record(self, event_type: EventType, service: str, data: dict[str, Any]) -> None:
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.length += 1
        if not self.dry:
            event = build_event(
                event_type,
                source=f"/{self.org}/{service}",
                data={"org": self.org, "subject": _subject(self), **data},
                event_id=event_id,
                time=self.now,
            )
            self.events.append(
                DemoEvent(event_key(event), encode_event(event), self.now, self.scenario, event)
            )
        # Two events of one subject never share a timestamp, so their order is unambiguous.
        self.now += timedelta(seconds=1)


def _subject(story: _Story) -> dict[str, str]:
    return {"id": story.subject_id, "kind": story.subject_kind}


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

# --- LinkXUP -------------------------------------------------------------------------------

LX_BASICS = ("user.name", "user.job_title", "user.contact.address.city")
LX_PAYZONE = _Recipient("payzone-ma", "service_provider", "MA")
LX_RESEARCH = _Recipient("um5-social-data-lab", "research_partner", "MA")
LX_AFFILIATE = _Recipient("linkxup-europe-sas", "affiliate", "FR", SCC)
LX_PARTNER = _Recipient("souk-deals", "business_partner", "MA")
LX_AD_NETWORK = _Recipient("audiencebridge-ads", "ad_network", "FR", SCC)
LX_AFFILIATE_NO_SAFEGUARD = _Recipient("linkxup-europe-sas", "affiliate", "FR")
LX_ADS: Actor = ("service", "ads-ranker")
LX_FEED: Actor = ("service", "feed-ranker")
LX_MAILER: Actor = ("service", "campaign-sender")
LX_BILLING: Actor = ("service", "billing")
LX_SYNC: Actor = ("service", "directory-sync")
LX_EXPORT: Actor = ("service", "research-export")
LX_CALLCENTER: Actor = ("service_provider", "callcenter-casa")
LX_OFFERS: Actor = ("service", "partner-offers")


def _lx_signup(s: _Story, *, ads: bool, email: bool, visible: bool) -> None:
    s.account("created")
    s.wait(timedelta(seconds=20), timedelta(minutes=3))
    s.consent("marketing.advertising", "given" if ads else "withdrawn")
    s.consent(EMAIL, "given" if email else "withdrawn")
    public = [*LX_BASICS, "user.contact.url"] if s.chance(0.3) else list(LX_BASICS)
    s.settings(profile_visible=visible, public_categories=public)


def _lx_sessions(s: _Story, sessions: int, *, ads: bool, email: bool, visible: bool) -> None:
    """Months of ordinary use; the ads consent and the profile's visibility change now and then."""
    for _ in range(sessions):
        s.wait(DAY, 40 * DAY)
        s.account("active")
        if s.chance(0.08):
            ads = not ads
            s.consent("marketing.advertising", "given" if ads else "withdrawn")
        if s.chance(0.05):
            visible = not visible
            s.settings(profile_visible=visible)
        for _ in range(s.rng.randint(1, 3)):
            s.wait(timedelta(minutes=1), 6 * HOUR)
            _lx_activity(s, ads=ads, email=email, visible=visible)


def _lx_activity(s: _Story, *, ads: bool, email: bool, visible: bool) -> None:
    kind = s.pick(("view", "view", "feed", "ads", "email", "bill", "research", "sync", "stats"))
    if kind == "view" and visible:
        shown = LX_BASICS[: s.rng.randint(1, 3)]
        s.access("profile-views", s.member(), shown, SERVICE, CONTRACT)
    elif kind == "feed":
        s.access("feed-ranking", LX_FEED, (BROWSING, "user.job_title"), PROFILED, LI)
    elif kind == "ads" and ads:
        s.access(
            "ads-targeting", LX_ADS, (BROWSING, "user.demographic.age_range"), TARGETED, CONSENT
        )
    elif kind == "ads":
        contextual = "marketing.advertising.first_party.contextual"
        s.access("ads-targeting", LX_ADS, ("user.contact.address.city",), contextual, LI)
    elif kind == "email" and email:
        s.access("email-campaigns", LX_MAILER, NAME_EMAIL, EMAIL, CONSENT)
    elif kind == "bill":
        s.share("billing", LX_BILLING, (CARD, "user.name"), PAYMENT, CONTRACT, LX_PAYZONE)
    elif kind == "research":
        categories = ("user.job_title", "user.contact.address.city")
        s.share("research-exports", LX_EXPORT, categories, STATS, LI, LX_RESEARCH, aggregated=True)
    elif kind == "sync":
        s.share("partner-sync", LX_SYNC, LX_BASICS[:2], OPERATIONS, CONTRACT, LX_AFFILIATE)
    elif kind == "stats":
        s.access("analytics", ("service_provider", "statlab-analytics"), (BROWSING,), STATS, LI)


def _lx_member(s: _Story) -> None:
    """A member networks for months; ads and email only with consent, which some toggle."""
    ads, email, visible = s.chance(0.65), s.chance(0.45), s.chance(0.8)
    _lx_signup(s, ads=ads, email=email, visible=visible)
    if email and s.chance(0.3):
        s.wait(DAY, 30 * DAY)
        s.share("partner-offers", LX_OFFERS, NAME_EMAIL, EMAIL, CONSENT, LX_PARTNER)
    _lx_sessions(s, s.rng.randint(3, 10), ads=ads, email=email, visible=visible)


def _lx_member_leaves(s: _Story) -> None:
    """A member closes the account and is erased within 30 days."""
    _lx_signup(s, ads=False, email=False, visible=True)
    _lx_sessions(s, s.rng.randint(1, 4), ads=False, email=False, visible=True)
    s.wait(DAY, 20 * DAY)
    s.account("closed")
    if s.chance(0.3):
        # Still within the 72 hours the policy gives for hiding a closed profile.
        s.wait(HOUR, 48 * HOUR)
        s.access("profile-views", s.member(), LX_BASICS[:2], SERVICE, CONTRACT)
    s.wait(HOUR, 2 * DAY)
    request = s.request("erasure")
    s.wait(DAY, 20 * DAY)
    s.fulfil(request, "erasure")


def _lx_member_dispute(s: _Story) -> None:
    """A closed account is kept under a legal hold during a payment dispute."""
    _lx_signup(s, ads=True, email=False, visible=True)
    _lx_sessions(s, s.rng.randint(1, 4), ads=True, email=False, visible=True)
    s.wait(DAY, 10 * DAY)
    s.account("closed")
    s.wait(HOUR, 3 * DAY)
    s.hold("placed", "chargeback dispute on a premium subscription")


def _lx_member_objects(s: _Story) -> None:
    """A member objects to the personalised feed, which then stops."""
    _lx_signup(s, ads=False, email=False, visible=True)
    _lx_sessions(s, s.rng.randint(1, 3), ads=False, email=False, visible=True)
    s.wait(DAY, 10 * DAY)
    s.consent("personalize", "objected", via="privacy-settings")
    for _ in range(s.rng.randint(1, 4)):
        s.wait(DAY, 30 * DAY)
        s.account("active")
        s.access("profile-views", s.member(), LX_BASICS, SERVICE, CONTRACT)


def _lx_visitor(s: _Story) -> None:
    """A visitor browses; targeted ads only after accepting them in the cookie banner."""
    ads = s.chance(0.5)
    s.consent("marketing.advertising", "given" if ads else "withdrawn", via="cookie-banner")
    cookies = ("user.device.cookie_id", BROWSING)
    for _ in range(s.rng.randint(1, 6)):
        s.wait(HOUR, 20 * DAY)
        s.access("web-analytics", ("service", "web-analytics"), cookies, STATS, LI)
        if ads:
            s.wait(timedelta(seconds=2), timedelta(minutes=5))
            s.access("ads-targeting", LX_ADS, cookies, TARGETED, CONSENT)


def _lx_ad_network_leak(s: _Story) -> None:
    """Browsing history is sent to an ad network."""
    _lx_signup(s, ads=True, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    third_party = "marketing.advertising.third_party.targeted"
    s.share("ads-targeting", LX_ADS, (BROWSING,), third_party, CONSENT, LX_AD_NETWORK)


def _lx_ads_after_withdrawal(s: _Story) -> None:
    """Targeted ads go on after the member withdrew consent."""
    _lx_signup(s, ads=True, email=False, visible=True)
    _lx_sessions(s, 1, ads=True, email=False, visible=True)
    s.wait(DAY, 20 * DAY)
    s.consent("marketing.advertising", "withdrawn")
    s.wait(HOUR, 5 * DAY)
    s.access("ads-targeting", LX_ADS, (BROWSING, "user.demographic.age_range"), TARGETED, LI)


def _lx_partner_mailing(s: _Story) -> None:
    """An email address goes to a partner for its mailings without the member's permission."""
    _lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    s.share("partner-offers", LX_OFFERS, NAME_EMAIL, EMAIL, LI, LX_PARTNER)


def _lx_provider_scope_creep(s: _Story) -> None:
    """A call-centre provider reuses support data to train its own AI."""
    _lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    s.access("support-desk", LX_CALLCENTER, ("user.contact.phone_number",), "train_ai_system", LI)


def _lx_raw_research_export(s: _Story) -> None:
    """A research partner receives per-member rows instead of aggregates."""
    _lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    categories = ("user.job_title", "user.demographic.age_range")
    s.share("research-exports", LX_EXPORT, categories, STATS, LI, LX_RESEARCH)


def _lx_hidden_profile_viewed(s: _Story) -> None:
    """Another member reads the contact details of a hidden profile."""
    _lx_signup(s, ads=False, email=False, visible=False)
    s.wait(DAY, 30 * DAY)
    categories = ("user.name", "user.contact.phone_number", "user.contact.email")
    s.access("profile-views", s.member(), categories, SERVICE, CONTRACT)


def _lx_closed_profile_visible(s: _Story) -> None:
    """A closed profile is still shown to members days after closure."""
    _lx_signup(s, ads=False, email=False, visible=True)
    _lx_sessions(s, 1, ads=False, email=False, visible=True)
    s.wait(DAY, 10 * DAY)
    s.account("closed")
    s.wait(HOUR, DAY)
    s.hold("placed", "harassment complaint under investigation")
    s.wait(4 * DAY, 9 * DAY)
    s.access("profile-views", s.member(), LX_BASICS, SERVICE, CONTRACT)


def _lx_closed_not_deleted(s: _Story) -> None:
    """A closed account is never erased."""
    _lx_signup(s, ads=False, email=False, visible=True)
    _lx_sessions(s, s.rng.randint(1, 3), ads=False, email=False, visible=True)
    s.wait(DAY, 10 * DAY)
    s.account("closed")


def _lx_newsletter_after_withdrawal(s: _Story) -> None:
    """The newsletter keeps coming after the member withdrew consent."""
    _lx_signup(s, ads=False, email=True, visible=True)
    s.wait(DAY, 10 * DAY)
    s.access("email-campaigns", LX_MAILER, NAME_EMAIL, EMAIL, CONSENT)
    s.wait(DAY, 20 * DAY)
    s.consent(EMAIL, "withdrawn", via="email-campaigns")
    s.wait(2 * DAY, 20 * DAY)
    s.access("email-campaigns", LX_MAILER, NAME_EMAIL, EMAIL, CONSENT)


def _lx_profiling_after_objection(s: _Story) -> None:
    """The feed keeps profiling a member who objected to it."""
    _lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 10 * DAY)
    s.consent("personalize", "objected", via="privacy-settings")
    s.wait(DAY, 20 * DAY)
    s.access("feed-ranking", LX_FEED, (BROWSING,), PROFILED, LI)


def _lx_transfer_without_safeguard(s: _Story) -> None:
    """Profiles are synced to the French affiliate with no transfer safeguard."""
    _lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    s.share("partner-sync", LX_SYNC, LX_BASICS[:2], OPERATIONS, CONTRACT, LX_AFFILIATE_NO_SAFEGUARD)


def _lx_plaintext_transfer(s: _Story) -> None:
    """Card data goes to the payment provider unencrypted."""
    _lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    s.share("billing", LX_BILLING, (CARD,), PAYMENT, CONTRACT, LX_PAYZONE, encrypted=False)


# --- XpertAIze -----------------------------------------------------------------------------

XA_PROFILE = (CV, SALARY, "user.job_title")
XA_SHARED = ("user.name", "user.contact.email", CV)
XA_EMPLOYERS = tuple(
    _Recipient(name, "employer", "MA")
    for name in ("ocp-group-talent", "atlas-logistics", "casa-nearshore-tech", "bmce-careers")
)
XA_GPU_CLOUD = _Recipient("eu-gpu-cloud", "service_provider", "DE", SCC)
XA_BAROMETER = _Recipient("hr-barometer-media", "business_partner", "MA")
XA_OFFSHORE_AI = _Recipient("fastinfer-ai", "service_provider", "US")
XA_BROKER = _Recipient("leadgen-brokers", "buyer", "MA")
XA_LABELLER = _Recipient("crowdlabel-partners", "third_party", "MA")
XA_MATCHER: Actor = ("service", "matcher")
XA_MAILER: Actor = ("service", "mailer")
XA_TRAINER: Actor = ("service", "model-trainer")
XA_GATEWAY: Actor = ("service", "inference-gateway")
XA_INSIGHTS: Actor = ("service", "insights")


def _xa_signup(s: _Story, *, matching: bool, marketing: bool, auto_share: bool) -> None:
    s.account("created")
    s.wait(timedelta(seconds=30), timedelta(minutes=5))
    s.consent(RECRUITMENT, "given" if matching else "withdrawn")
    if marketing:
        s.consent("marketing.communications", "given")
    s.settings(auto_share_with_employers=auto_share)
    s.wait(timedelta(minutes=1), HOUR)
    s.access("cv-upload", ("service", "cv-parser"), (CV,), SERVICE, CONTRACT)


def _xa_sessions(s: _Story, sessions: int, *, marketing: bool, auto_share: bool) -> None:
    for _ in range(sessions):
        s.wait(2 * DAY, 45 * DAY)
        s.account("active")
        if s.chance(0.08):
            marketing = not marketing
            s.consent("marketing.communications", "given" if marketing else "withdrawn")
        if s.chance(0.06):
            auto_share = not auto_share
            s.settings(auto_share_with_employers=auto_share)
        for _ in range(s.rng.randint(1, 3)):
            s.wait(timedelta(minutes=1), 8 * HOUR)
            _xa_activity(s, marketing=marketing, auto_share=auto_share)


def _xa_activity(s: _Story, *, marketing: bool, auto_share: bool) -> None:
    kind = s.pick(
        ("match", "match", "recruiter", "share", "mail", "train", "host", "stats", "dsar")
    )
    if kind == "match":
        s.access("recruiter-matching", XA_MATCHER, XA_PROFILE, RECRUITMENT, CONSENT)
    elif kind == "recruiter":
        recruiter: Actor = ("employee", s.someone("recruiter"))
        s.access("recruiter-matching", recruiter, XA_PROFILE, RECRUITMENT, CONSENT)
    elif kind == "share":
        employer = s.pick(XA_EMPLOYERS)
        explicit = not auto_share
        s.share(
            "employer-share",
            XA_MATCHER,
            XA_SHARED,
            RECRUITMENT,
            CONSENT,
            employer,
            explicit_consent=explicit,
        )
    elif kind == "mail" and marketing:
        s.access("newsletter", XA_MAILER, NAME_EMAIL, EMAIL, CONSENT)
    elif kind == "train":
        s.access("ai-training", XA_TRAINER, (CV, "user.job_title"), "train_ai_system", LI)
    elif kind == "host":
        s.share("ai-hosting", XA_GATEWAY, (CV,), OPERATIONS, CONTRACT, XA_GPU_CLOUD)
    elif kind == "stats":
        categories = (SALARY, "user.job_title")
        s.share("insights", XA_INSIGHTS, categories, STATS, LI, XA_BAROMETER, aggregated=True)
    elif kind == "dsar":
        request = s.request("access")
        s.wait(DAY, 20 * DAY)
        s.fulfil(request, "access")


def _xa_candidate(s: _Story) -> None:
    """A candidate is matched and shared with employers as the sharing setting allows."""
    marketing, auto_share = s.chance(0.4), s.chance(0.7)
    _xa_signup(s, matching=True, marketing=marketing, auto_share=auto_share)
    _xa_sessions(s, s.rng.randint(3, 10), marketing=marketing, auto_share=auto_share)


def _xa_candidate_deletes(s: _Story) -> None:
    """A candidate asks for deletion, done within 30 days."""
    _xa_signup(s, matching=True, marketing=False, auto_share=True)
    _xa_sessions(s, s.rng.randint(1, 4), marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    request = s.request("erasure")
    s.wait(DAY, 25 * DAY)
    s.account("closed")
    s.wait(timedelta(minutes=1), HOUR)
    s.fulfil(request, "erasure")


def _xa_candidate_leaves(s: _Story) -> None:
    """A candidate closes the account; the data stays within the 36 months allowed."""
    _xa_signup(s, matching=True, marketing=False, auto_share=False)
    _xa_sessions(s, s.rng.randint(1, 4), marketing=False, auto_share=False)
    s.wait(DAY, 30 * DAY)
    s.account("closed")


def _xa_candidate_hold(s: _Story) -> None:
    """A closed account is kept for labour court proceedings."""
    _xa_signup(s, matching=True, marketing=False, auto_share=True)
    _xa_sessions(s, s.rng.randint(1, 3), marketing=False, auto_share=True)
    s.wait(DAY, 10 * DAY)
    s.account("closed")
    s.wait(DAY, 5 * DAY)
    s.hold("placed", "labour court proceedings")


def _xa_share_despite_opt_out(s: _Story) -> None:
    """A profile goes to an employer after the candidate turned automatic sharing off."""
    _xa_signup(s, matching=True, marketing=False, auto_share=False)
    s.wait(DAY, 30 * DAY)
    employer = s.pick(XA_EMPLOYERS)
    s.share("employer-share", XA_MATCHER, XA_SHARED, RECRUITMENT, CONSENT, employer)


def _xa_profile_sale(s: _Story) -> None:
    """Contact details are sold to a lead broker."""
    _xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    sale = "third_party_sharing.sale"
    s.share("partnerships", ("service", "lead-export"), NAME_EMAIL, sale, LI, XA_BROKER)


def _xa_newsletter_without_opt_in(s: _Story) -> None:
    """Promotional email goes to a candidate who never opted in."""
    _xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    s.access("newsletter", XA_MAILER, NAME_EMAIL, EMAIL, CONSENT)


def _xa_matching_without_consent(s: _Story) -> None:
    """AI matching runs for a candidate who declined it."""
    _xa_signup(s, matching=False, marketing=False, auto_share=False)
    s.wait(DAY, 30 * DAY)
    s.access("recruiter-matching", XA_MATCHER, XA_PROFILE, RECRUITMENT, CONSENT)


def _xa_offshore_without_safeguard(s: _Story) -> None:
    """CVs go to a US inference provider with no transfer safeguard."""
    _xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    s.share("ai-hosting", XA_GATEWAY, (CV,), OPERATIONS, CONTRACT, XA_OFFSHORE_AI)


def _xa_stale_profile(s: _Story) -> None:
    """A profile inactive for more than 36 months is still kept."""
    _xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(HOUR, 3 * DAY)
    s.access("recruiter-matching", XA_MATCHER, XA_PROFILE, RECRUITMENT, CONSENT)


def _xa_erasure_ignored(s: _Story) -> None:
    """A deletion request is left unanswered for more than 30 days."""
    _xa_signup(s, matching=True, marketing=False, auto_share=True)
    _xa_sessions(s, 1, marketing=False, auto_share=True)
    s.wait(DAY, 20 * DAY)
    s.request("erasure")


def _xa_raw_insights(s: _Story) -> None:
    """Salary insights are shared per candidate instead of aggregated."""
    _xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    s.share("insights", XA_INSIGHTS, (SALARY, "user.job_title"), STATS, LI, XA_BAROMETER)


def _xa_cv_to_labeller(s: _Story) -> None:
    """CVs are handed to an outside labelling firm to train AI."""
    _xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    s.share("ai-training", XA_TRAINER, (CV,), "train_ai_system", LI, XA_LABELLER)


# --- ConnectX ------------------------------------------------------------------------------

CX_CHAT = (WHATSAPP, "user.contact.phone_number")
CX_META = _Recipient("meta-whatsapp-business", "service_provider", "IE", SCC)
CX_ACQUIRER = _Recipient("network-international", "service_provider", "AE")
CX_UNVETTED_BOT = _Recipient("quickreply-bots", "service_provider", "AE")
CX_INBOX: Actor = ("service", "inbox-router")
CX_CHECKOUT: Actor = ("service", "checkout")
CX_AUDIENCE: Actor = ("service", "ad-audience")
CX_PROMO: Actor = ("service", "promo-sender")
CX_RECOMMENDER: Actor = ("service", "recommender")


def _cx_signup(s: _Story, *, marketing: bool, personalize: bool) -> None:
    s.account("created")
    s.wait(timedelta(seconds=10), timedelta(minutes=2))
    s.consent("marketing", "given" if marketing else "withdrawn")
    if personalize:
        s.consent("personalize", "given")


def _cx_sessions(s: _Story, sessions: int, *, marketing: bool, personalize: bool) -> None:
    for _ in range(sessions):
        s.wait(DAY, 30 * DAY)
        s.account("active")
        if s.chance(0.1):
            marketing = not marketing
            s.consent("marketing", "given" if marketing else "withdrawn", via="preferences")
        for _ in range(s.rng.randint(1, 4)):
            s.wait(timedelta(minutes=1), 4 * HOUR)
            _cx_activity(s, marketing=marketing, personalize=personalize)


def _cx_activity(s: _Story, *, marketing: bool, personalize: bool) -> None:
    kind = s.pick(("chat", "chat", "vendor", "pay", "fraud", "ads", "promo", "recommend"))
    if kind == "chat":
        s.access("whatsapp-inbox", CX_INBOX, CX_CHAT, SUPPORT, CONTRACT)
    elif kind == "vendor":
        s.share("whatsapp-inbox", CX_INBOX, CX_CHAT, SUPPORT, CONTRACT, CX_META)
    elif kind == "pay":
        categories = (CARD, "user.contact.address")
        s.access("payments", CX_CHECKOUT, categories, PAYMENT, CONTRACT)
        s.wait(timedelta(seconds=1), timedelta(seconds=20))
        s.share("payments", CX_CHECKOUT, categories, PAYMENT, CONTRACT, CX_ACQUIRER)
    elif kind == "fraud":
        categories = (CARD, "user.device.ip_address")
        s.access("fraud", ("service", "risk-engine"), categories, "essential.fraud_detection", LI)
    elif kind == "ads" and marketing:
        s.access("ads", CX_AUDIENCE, (PURCHASES,), TARGETED, CONSENT)
    elif kind == "promo" and marketing:
        s.access("marketing", CX_PROMO, NAME_EMAIL, EMAIL, CONSENT)
    elif kind == "recommend" and personalize:
        s.access("recommendations", CX_RECOMMENDER, (PURCHASES,), PROFILED, CONSENT)


def _cx_customer(s: _Story) -> None:
    """A customer chats on WhatsApp, pays, and gets marketing only with consent."""
    marketing, personalize = s.chance(0.55), s.chance(0.5)
    _cx_signup(s, marketing=marketing, personalize=personalize)
    _cx_sessions(s, s.rng.randint(3, 12), marketing=marketing, personalize=personalize)


def _cx_customer_erased(s: _Story) -> None:
    """A customer is erased; afterwards only the tax records are touched."""
    _cx_signup(s, marketing=False, personalize=False)
    _cx_sessions(s, s.rng.randint(1, 4), marketing=False, personalize=False)
    s.wait(DAY, 20 * DAY)
    request = s.request("erasure")
    s.wait(DAY, 20 * DAY)
    s.fulfil(request, "erasure")
    if s.chance(0.6):
        s.wait(30 * DAY, 200 * DAY)
        ledger: Actor = ("service", "tax-ledger")
        categories = ("user.name", PURCHASES)
        s.access(
            "billing-archive", ledger, categories, "essential.legal_obligation", "legal_obligation"
        )


def _cx_long_standing(s: _Story, events: int, span: timedelta) -> None:
    """A customer from before the demo began, chatting with support at a steady pace."""
    step = span / events
    for _ in range(events):
        s.now += step - timedelta(seconds=1)
        s.access("whatsapp-inbox", CX_INBOX, CX_CHAT, SUPPORT, CONTRACT)


def _cx_chats_for_ads(s: _Story) -> None:
    """WhatsApp messages feed the ad audience builder."""
    _cx_signup(s, marketing=True, personalize=False)
    s.wait(DAY, 30 * DAY)
    s.access("whatsapp-inbox", CX_INBOX, CX_CHAT, SUPPORT, CONTRACT)
    s.wait(HOUR, 5 * DAY)
    s.access("ads", CX_AUDIENCE, (WHATSAPP, PURCHASES), TARGETED, CONSENT)


def _cx_promo_without_consent(s: _Story) -> None:
    """A promotional SMS goes to a customer who refused marketing."""
    _cx_signup(s, marketing=False, personalize=False)
    s.wait(DAY, 30 * DAY)
    sms = "marketing.communications.sms"
    s.access("marketing", CX_PROMO, ("user.contact.phone_number",), sms, LI)


def _cx_chats_to_unvetted_bot(s: _Story) -> None:
    """WhatsApp chats are sent to a chatbot vendor that was never vetted."""
    _cx_signup(s, marketing=False, personalize=False)
    s.wait(DAY, 30 * DAY)
    s.share("whatsapp-inbox", CX_INBOX, CX_CHAT, SUPPORT, CONTRACT, CX_UNVETTED_BOT)


def _cx_card_data_in_clear(s: _Story) -> None:
    """Card data goes to the acquirer unencrypted."""
    _cx_signup(s, marketing=False, personalize=False)
    s.wait(DAY, 30 * DAY)
    s.share("payments", CX_CHECKOUT, (CARD,), PAYMENT, CONTRACT, CX_ACQUIRER, encrypted=False)


def _cx_personalisation_after_withdrawal(s: _Story) -> None:
    """Recommendations keep profiling after the customer withdrew consent."""
    _cx_signup(s, marketing=False, personalize=True)
    s.wait(DAY, 20 * DAY)
    s.access("recommendations", CX_RECOMMENDER, (PURCHASES,), PROFILED, CONSENT)
    s.wait(DAY, 20 * DAY)
    s.consent("personalize", "withdrawn", via="preferences")
    s.wait(DAY, 10 * DAY)
    s.access("recommendations", CX_RECOMMENDER, (PURCHASES,), PROFILED, CONSENT)


def _cx_erased_customer_read(s: _Story) -> None:
    """Support reads the chats of an erased customer."""
    _cx_signup(s, marketing=False, personalize=False)
    _cx_sessions(s, 1, marketing=False, personalize=False)
    s.wait(DAY, 10 * DAY)
    request = s.request("erasure")
    s.wait(DAY, 10 * DAY)
    s.fulfil(request, "erasure")
    s.wait(DAY, 30 * DAY)
    s.access("support", ("employee", s.someone("agent")), CX_CHAT, SUPPORT, CONTRACT)


def _cx_card_data_for_analytics(s: _Story) -> None:
    """Card data feeds the revenue dashboards."""
    _cx_signup(s, marketing=False, personalize=False)
    s.wait(DAY, 30 * DAY)
    dashboards: Actor = ("service", "revenue-dashboards")
    s.access("insights", dashboards, (CARD, PURCHASES), STATS, LI)


# --- Catalogue -----------------------------------------------------------------------------

# XpertAIze keeps data up to 36 months after the last activity. Its stories start late enough
# to stay inside that window until the run ends, except the one that is meant to cross it.
XA_RETENTION_SAFE = timedelta(days=120)
DEADLINE_MARGIN = timedelta(days=32)
_ORGS = {"lx": "linkxup", "xa": "xpertaize", "cx": "connectx"}


@dataclass(frozen=True)
class _Scenario:
    info: ScenarioInfo
    subject_kind: str
    play: Callable[[_Story], None]
    weight: float
    # Window for the story's start, from the run's start, and the time that must remain between
    # its last event and the run's end (so the deadline it misses passes within the run).
    not_before: timedelta
    not_after: timedelta | None
    margin: timedelta


def _scenario(
    play: Callable[[_Story], None],
    *violates: str,
    weight: float = 0.0,
    subject_kind: str = "",
    not_after: timedelta | None = None,
    margin: timedelta = timedelta(0),
) -> _Scenario:
    """A scenario named after its function (`_lx_member` is `lx-member` of linkxup)."""
    name = play.__name__.strip("_").replace("_", "-")
    org = _ORGS[name[:2]]
    kind = subject_kind or ("job_applicant" if org == "xpertaize" else "customer")
    late = org == "xpertaize" and not_after is None
    info = ScenarioInfo(name, org, (play.__doc__ or "").strip(), violates)
    not_before = XA_RETENTION_SAFE if late else timedelta(0)
    return _Scenario(info, kind, play, weight, not_before, not_after, margin)


_COMPLIANT = (
    _scenario(_lx_member, weight=5),
    _scenario(_lx_member_leaves, weight=1.5),
    _scenario(_lx_member_dispute, weight=0.4),
    _scenario(_lx_member_objects, weight=0.6),
    _scenario(_lx_visitor, weight=2.5, subject_kind="visitor"),
    _scenario(_xa_candidate, weight=4),
    _scenario(_xa_candidate_deletes, weight=1.2),
    _scenario(_xa_candidate_leaves, weight=0.8),
    _scenario(_xa_candidate_hold, weight=0.3),
    _scenario(_cx_customer, weight=4),
    _scenario(_cx_customer_erased, weight=1),
)

_VIOLATING = (
    _scenario(_lx_ad_network_leak, "LX-ADNET-001"),
    _scenario(_lx_ads_after_withdrawal, "LX-ADS-002"),
    _scenario(_lx_partner_mailing, "LX-DM-003"),
    _scenario(_lx_provider_scope_creep, "LX-SP-004"),
    _scenario(_lx_raw_research_export, "LX-RSCH-005"),
    _scenario(_lx_hidden_profile_viewed, "LX-VIS-006"),
    _scenario(_lx_closed_profile_visible, "LX-CLOSE-007"),
    _scenario(_lx_closed_not_deleted, "LX-CLOSE-008", margin=DEADLINE_MARGIN),
    _scenario(_lx_newsletter_after_withdrawal, "LX-CONSENT-009"),
    _scenario(_lx_profiling_after_objection, "LX-OBJ-010"),
    _scenario(_lx_transfer_without_safeguard, "LX-XB-011"),
    _scenario(_lx_plaintext_transfer, "LX-TLS-012"),
    _scenario(_xa_share_despite_opt_out, "XA-EMP-001"),
    _scenario(_xa_profile_sale, "XA-SALE-002"),
    _scenario(_xa_newsletter_without_opt_in, "XA-MKT-003"),
    _scenario(_xa_matching_without_consent, "XA-MATCH-004"),
    _scenario(_xa_offshore_without_safeguard, "XA-XB-005"),
    # Starts in the run's first days so its 36 months run out before the run ends.
    _scenario(_xa_stale_profile, "XA-RET-006", not_after=10 * DAY, margin=1100 * DAY),
    _scenario(_xa_erasure_ignored, "XA-DSAR-007", margin=DEADLINE_MARGIN),
    _scenario(_xa_raw_insights, "XA-AGG-008"),
    _scenario(_xa_cv_to_labeller, "XA-AI-009"),
    _scenario(_cx_chats_for_ads, "CX-WA-ADS-001"),
    _scenario(_cx_promo_without_consent, "CX-MKT-002"),
    _scenario(_cx_chats_to_unvetted_bot, "CX-WA-VENDOR-003"),
    _scenario(_cx_card_data_in_clear, "CX-ENC-004"),
    _scenario(_cx_personalisation_after_withdrawal, "CX-CONSENT-005"),
    _scenario(_cx_erased_customer_read, "CX-ERASED-006"),
    _scenario(_cx_card_data_for_analytics, "CX-PAY-007"),
)


# --- Planning ------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class _Plan:
    """A story to tell: which scenario, about whom (its seed), and when it begins."""

    start: datetime
    order: int
    seed: int = field(compare=False)
    name: str = field(compare=False)
    org: str = field(compare=False)
    subject_kind: str = field(compare=False)
    play: Callable[[_Story], None] = field(compare=False)

    def tell(self, *, dry: bool) -> _Story:
        story = _Story(
            random.Random(self.seed), self.name, self.org, self.subject_kind, self.start, dry=dry
        )
        self.play(story)
        return story


class _Planner:
    """Decides which stories make up a run, and when each begins, before any is told."""

    def __init__(self, rng: random.Random, start: datetime, count: int) -> None:
        self.rng = rng
        self.start = start
        self.end = start + DEMO_SPAN
        self.count = count
        self.plans: list[_Plan] = []
        self.used = 0

    def plan(self, violation_share: float, malformed_share: float) -> list[_Plan]:
        malformed = round(self.count * malformed_share)
        # One event is kept for the long-standing customer whose chats run to the end.
        budget = self.count - malformed - 1
        self._add_violating(budget, violation_share * budget)
        self._add_compliant(budget)
        self._add_filler(self.count - malformed - self.used)
        for i in range(malformed):
            self._add_malformed(DEFECTS[i % len(DEFECTS)])
        return sorted(self.plans)

    def _add_violating(self, budget: int, target: float) -> None:
        """Whole rounds of every violating scenario first, then more until `target` events."""
        order = list(_VIOLATING)
        self.rng.shuffle(order)
        told = 0
        for i, scenario in enumerate(itertools.cycle(order)):
            if i >= len(order) and told >= target:
                return
            length = self._try(scenario, budget)
            if length == 0:
                return
            told += length

    def _add_compliant(self, budget: int) -> None:
        weights = [s.weight for s in _COMPLIANT]
        while self._try(self.rng.choices(_COMPLIANT, weights)[0], budget):
            pass

    def _try(self, scenario: _Scenario, budget: int) -> int:
        """Plan a story of `scenario` if it fits in the budget; returns its length, or 0."""
        info = scenario.info
        plan = self._plan(self.start, info.name, info.org, scenario.subject_kind, scenario.play)
        story = plan.tell(dry=True)
        if self.used + story.length > budget:
            return 0
        latest = self.end - (story.now - self.start) - scenario.margin
        if scenario.not_after is not None:
            latest = min(latest, self.start + scenario.not_after)
        earliest = self.start + scenario.not_before
        offset = self.rng.uniform(0, max(0.0, (latest - earliest).total_seconds()))
        begin = (earliest + timedelta(seconds=round(offset))).replace(microsecond=0)
        self.plans.append(replace(plan, start=begin))
        self.used += story.length
        return story.length

    def _add_filler(self, events: int) -> None:
        span = self.end - self.start

        def play(story: _Story) -> None:
            _cx_long_standing(story, events, span)

        self.plans.append(self._plan(self.start, FILLER, "connectx", "customer", play))

    def _add_malformed(self, defect: Defect) -> None:
        at = self.start + timedelta(seconds=self.rng.randrange(int(DEMO_SPAN.total_seconds())))

        def play(story: _Story) -> None:
            story.events.append(_malformed(story, defect))

        self.plans.append(self._plan(at, MALFORMED, "connectx", "customer", play))

    def _plan(
        self,
        start: datetime,
        name: str,
        org: str,
        subject_kind: str,
        play: Callable[[_Story], None],
    ) -> _Plan:
        return _Plan(
            start, len(self.plans), self.rng.getrandbits(64), name, org, subject_kind, play
        )


_Pending = tuple[datetime, int, int, DemoEvent, Iterator[DemoEvent]]


def _in_time_order(plans: Sequence[_Plan]) -> Iterator[DemoEvent]:
    """Tell each story when its start comes up and merge all of them by event time."""
    pending: list[_Pending] = []
    for plan in plans:
        while pending and pending[0][0] <= plan.start:
            yield _pop_next(pending)
        events = iter(plan.tell(dry=False).events)
        first = next(events, None)
        if first is not None:
            heapq.heappush(pending, (first.time, plan.order, 0, first, events))
    while pending:
        yield _pop_next(pending)


def _pop_next(pending: list[_Pending]) -> DemoEvent:
    _, order, position, event, rest = heapq.heappop(pending)
    following = next(rest, None)
    if following is not None:
        heapq.heappush(pending, (following.time, order, position + 1, following, rest))
    return event


# --- Malformed input -----------------------------------------------------------------------


def _malformed(story: _Story, defect: Defect) -> DemoEvent:
    """A support-chat access as a careless producer might send it, broken in one way."""
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.UUID(int=story.rng.getrandbits(128), version=4)),
        "source": "/connectx/whatsapp-inbox",
        "type": str(EventType.DATA_ACCESSED),
        "time": story.now.isoformat(),
        "data": {
            "org": "connectx",
            "subject": _subject(story),
            "actor": {"kind": "service", "id": "inbox-router"},
            "data_categories": [WHATSAPP],
            "data_use": SUPPORT,
            "legal_basis": "contract",
        },
    }
    if defect == "unknown event type":
        envelope["type"] = "privacy.data.deleted"
    elif defect == "unknown taxonomy key":
        envelope["data"]["data_categories"] = ["user.contact.shoe_size"]
    elif defect == "wrong field type":
        envelope["data"]["data_categories"] = WHATSAPP
    elif defect == "missing attribute":
        del envelope["time"]
    value = json.dumps(envelope).encode()
    if defect == "bad JSON":
        value = value[: len(value) // 2]
    return DemoEvent(story.subject_id.encode(), value, story.now, MALFORMED, defect=defect)
