"""LinkXUP, a professional network: members, visitors, ads, research exports and partners."""

from __future__ import annotations

from datetime import timedelta

from privtrail.demo.story import (
    BROWSING,
    CARD,
    CONSENT,
    CONTRACT,
    DAY,
    DEADLINE_MARGIN,
    EMAIL,
    HOUR,
    LI,
    NAME_EMAIL,
    OPERATIONS,
    PAYMENT,
    PROFILED,
    SCC,
    SERVICE,
    STATS,
    TARGETED,
    Actor,
    Recipient,
    Story,
    scenario,
)

LX_BASICS = ("user.name", "user.job_title", "user.contact.address.city")
LX_PAYZONE = Recipient("payzone-ma", "service_provider", "MA")
LX_RESEARCH = Recipient("um5-social-data-lab", "research_partner", "MA")
LX_AFFILIATE = Recipient("linkxup-europe-sas", "affiliate", "FR", SCC)
LX_PARTNER = Recipient("souk-deals", "business_partner", "MA")
LX_AD_NETWORK = Recipient("audiencebridge-ads", "ad_network", "FR", SCC)
LX_AFFILIATE_NO_SAFEGUARD = Recipient("linkxup-europe-sas", "affiliate", "FR")
LX_ADS: Actor = ("service", "ads-ranker")
LX_FEED: Actor = ("service", "feed-ranker")
LX_MAILER: Actor = ("service", "campaign-sender")
LX_BILLING: Actor = ("service", "billing")
LX_SYNC: Actor = ("service", "directory-sync")
LX_EXPORT: Actor = ("service", "research-export")
LX_CALLCENTER: Actor = ("service_provider", "callcenter-casa")
LX_OFFERS: Actor = ("service", "partner-offers")


def lx_signup(s: Story, *, ads: bool, email: bool, visible: bool) -> None:
    s.account("created")
    s.wait(timedelta(seconds=20), timedelta(minutes=3))
    s.consent("marketing.advertising", "given" if ads else "withdrawn")
    s.consent(EMAIL, "given" if email else "withdrawn")
    public = [*LX_BASICS, "user.contact.url"] if s.chance(0.3) else list(LX_BASICS)
    s.settings(profile_visible=visible, public_categories=public)


def lx_sessions(s: Story, sessions: int, *, ads: bool, email: bool, visible: bool) -> None:
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
            lx_activity(s, ads=ads, email=email, visible=visible)


def lx_activity(s: Story, *, ads: bool, email: bool, visible: bool) -> None:
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


def lx_member(s: Story) -> None:
    """A member networks for months; ads and email only with consent, which some toggle."""
    ads, email, visible = s.chance(0.65), s.chance(0.45), s.chance(0.8)
    lx_signup(s, ads=ads, email=email, visible=visible)
    if email and s.chance(0.3):
        s.wait(DAY, 30 * DAY)
        s.share("partner-offers", LX_OFFERS, NAME_EMAIL, EMAIL, CONSENT, LX_PARTNER)
    lx_sessions(s, s.rng.randint(3, 10), ads=ads, email=email, visible=visible)


def lx_member_leaves(s: Story) -> None:
    """A member closes the account and is erased within 30 days."""
    lx_signup(s, ads=False, email=False, visible=True)
    lx_sessions(s, s.rng.randint(1, 4), ads=False, email=False, visible=True)
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


def lx_member_dispute(s: Story) -> None:
    """A closed account is kept under a legal hold during a payment dispute."""
    lx_signup(s, ads=True, email=False, visible=True)
    lx_sessions(s, s.rng.randint(1, 4), ads=True, email=False, visible=True)
    s.wait(DAY, 10 * DAY)
    s.account("closed")
    s.wait(HOUR, 3 * DAY)
    s.hold("placed", "chargeback dispute on a premium subscription")


def lx_member_objects(s: Story) -> None:
    """A member objects to the personalised feed, which then stops."""
    lx_signup(s, ads=False, email=False, visible=True)
    lx_sessions(s, s.rng.randint(1, 3), ads=False, email=False, visible=True)
    s.wait(DAY, 10 * DAY)
    s.consent("personalize", "objected", via="privacy-settings")
    for _ in range(s.rng.randint(1, 4)):
        s.wait(DAY, 30 * DAY)
        s.account("active")
        s.access("profile-views", s.member(), LX_BASICS, SERVICE, CONTRACT)


def lx_visitor(s: Story) -> None:
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


def lx_ad_network_leak(s: Story) -> None:
    """Browsing history is sent to an ad network."""
    lx_signup(s, ads=True, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    third_party = "marketing.advertising.third_party.targeted"
    s.share("ads-targeting", LX_ADS, (BROWSING,), third_party, CONSENT, LX_AD_NETWORK)


def lx_ads_after_withdrawal(s: Story) -> None:
    """Targeted ads go on after the member withdrew consent."""
    lx_signup(s, ads=True, email=False, visible=True)
    lx_sessions(s, 1, ads=True, email=False, visible=True)
    s.wait(DAY, 20 * DAY)
    s.consent("marketing.advertising", "withdrawn")
    s.wait(HOUR, 5 * DAY)
    s.access("ads-targeting", LX_ADS, (BROWSING, "user.demographic.age_range"), TARGETED, LI)


def lx_partner_mailing(s: Story) -> None:
    """An email address goes to a partner for its mailings without the member's permission."""
    lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    s.share("partner-offers", LX_OFFERS, NAME_EMAIL, EMAIL, LI, LX_PARTNER)


def lx_provider_scope_creep(s: Story) -> None:
    """A call-centre provider reuses support data to train its own AI."""
    lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    s.access("support-desk", LX_CALLCENTER, ("user.contact.phone_number",), "train_ai_system", LI)


def lx_raw_research_export(s: Story) -> None:
    """A research partner receives per-member rows instead of aggregates."""
    lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    categories = ("user.job_title", "user.demographic.age_range")
    s.share("research-exports", LX_EXPORT, categories, STATS, LI, LX_RESEARCH)


def lx_hidden_profile_viewed(s: Story) -> None:
    """Another member reads the contact details of a hidden profile."""
    lx_signup(s, ads=False, email=False, visible=False)
    s.wait(DAY, 30 * DAY)
    categories = ("user.name", "user.contact.phone_number", "user.contact.email")
    s.access("profile-views", s.member(), categories, SERVICE, CONTRACT)


def lx_closed_profile_visible(s: Story) -> None:
    """A closed profile is still shown to members days after closure."""
    lx_signup(s, ads=False, email=False, visible=True)
    lx_sessions(s, 1, ads=False, email=False, visible=True)
    s.wait(DAY, 10 * DAY)
    s.account("closed")
    s.wait(HOUR, DAY)
    s.hold("placed", "harassment complaint under investigation")
    s.wait(4 * DAY, 9 * DAY)
    s.access("profile-views", s.member(), LX_BASICS, SERVICE, CONTRACT)


def lx_closed_not_deleted(s: Story) -> None:
    """A closed account is never erased."""
    lx_signup(s, ads=False, email=False, visible=True)
    lx_sessions(s, s.rng.randint(1, 3), ads=False, email=False, visible=True)
    s.wait(DAY, 10 * DAY)
    s.account("closed")


def lx_newsletter_after_withdrawal(s: Story) -> None:
    """The newsletter keeps coming after the member withdrew consent."""
    lx_signup(s, ads=False, email=True, visible=True)
    s.wait(DAY, 10 * DAY)
    s.access("email-campaigns", LX_MAILER, NAME_EMAIL, EMAIL, CONSENT)
    s.wait(DAY, 20 * DAY)
    s.consent(EMAIL, "withdrawn", via="email-campaigns")
    s.wait(2 * DAY, 20 * DAY)
    s.access("email-campaigns", LX_MAILER, NAME_EMAIL, EMAIL, CONSENT)


def lx_profiling_after_objection(s: Story) -> None:
    """The feed keeps profiling a member who objected to it."""
    lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 10 * DAY)
    s.consent("personalize", "objected", via="privacy-settings")
    s.wait(DAY, 20 * DAY)
    s.access("feed-ranking", LX_FEED, (BROWSING,), PROFILED, LI)


def lx_transfer_without_safeguard(s: Story) -> None:
    """Profiles are synced to the French affiliate with no transfer safeguard."""
    lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    s.share("partner-sync", LX_SYNC, LX_BASICS[:2], OPERATIONS, CONTRACT, LX_AFFILIATE_NO_SAFEGUARD)


def lx_plaintext_transfer(s: Story) -> None:
    """Card data goes to the payment provider unencrypted."""
    lx_signup(s, ads=False, email=False, visible=True)
    s.wait(DAY, 30 * DAY)
    s.share("billing", LX_BILLING, (CARD,), PAYMENT, CONTRACT, LX_PAYZONE, encrypted=False)


COMPLIANT = (
    scenario(lx_member, weight=5),
    scenario(lx_member_leaves, weight=1.5),
    scenario(lx_member_dispute, weight=0.4),
    scenario(lx_member_objects, weight=0.6),
    scenario(lx_visitor, weight=2.5, subject_kind="visitor"),
)

VIOLATING = (
    scenario(lx_ad_network_leak, "LX-ADNET-001"),
    scenario(lx_ads_after_withdrawal, "LX-ADS-002"),
    scenario(lx_partner_mailing, "LX-DM-003"),
    scenario(lx_provider_scope_creep, "LX-SP-004"),
    scenario(lx_raw_research_export, "LX-RSCH-005"),
    scenario(lx_hidden_profile_viewed, "LX-VIS-006"),
    scenario(lx_closed_profile_visible, "LX-CLOSE-007"),
    scenario(lx_closed_not_deleted, "LX-CLOSE-008", margin=DEADLINE_MARGIN),
    scenario(lx_newsletter_after_withdrawal, "LX-CONSENT-009"),
    scenario(lx_profiling_after_objection, "LX-OBJ-010"),
    scenario(lx_transfer_without_safeguard, "LX-XB-011"),
    scenario(lx_plaintext_transfer, "LX-TLS-012"),
)
