"""ConnectX, a WhatsApp-first shop: support chats, payments and marketing."""

from __future__ import annotations

from datetime import timedelta

from privtrail.demo.story import (
    CARD,
    CONSENT,
    CONTRACT,
    DAY,
    EMAIL,
    HOUR,
    LI,
    NAME_EMAIL,
    PAYMENT,
    PROFILED,
    PURCHASES,
    SCC,
    STATS,
    SUPPORT,
    TARGETED,
    WHATSAPP,
    Actor,
    Recipient,
    Story,
    scenario,
)

CX_CHAT = (WHATSAPP, "user.contact.phone_number")
CX_META = Recipient("meta-whatsapp-business", "service_provider", "IE", SCC)
CX_ACQUIRER = Recipient("network-international", "service_provider", "AE")
CX_UNVETTED_BOT = Recipient("quickreply-bots", "service_provider", "AE")
CX_INBOX: Actor = ("service", "inbox-router")
CX_CHECKOUT: Actor = ("service", "checkout")
CX_AUDIENCE: Actor = ("service", "ad-audience")
CX_PROMO: Actor = ("service", "promo-sender")
CX_RECOMMENDER: Actor = ("service", "recommender")


def cx_signup(s: Story, *, marketing: bool, personalize: bool) -> None:
    s.account("created")
    s.wait(timedelta(seconds=10), timedelta(minutes=2))
    s.consent("marketing", "given" if marketing else "withdrawn")
    if personalize:
        s.consent("personalize", "given")


def cx_sessions(s: Story, sessions: int, *, marketing: bool, personalize: bool) -> None:
    for _ in range(sessions):
        s.wait(DAY, 30 * DAY)
        s.account("active")
        if s.chance(0.1):
            marketing = not marketing
            s.consent("marketing", "given" if marketing else "withdrawn", via="preferences")
        for _ in range(s.rng.randint(1, 4)):
            s.wait(timedelta(minutes=1), 4 * HOUR)
            cx_activity(s, marketing=marketing, personalize=personalize)


def cx_activity(s: Story, *, marketing: bool, personalize: bool) -> None:
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


def cx_customer(s: Story) -> None:
    """A customer chats on WhatsApp, pays, and gets marketing only with consent."""
    marketing, personalize = s.chance(0.55), s.chance(0.5)
    cx_signup(s, marketing=marketing, personalize=personalize)
    cx_sessions(s, s.rng.randint(3, 12), marketing=marketing, personalize=personalize)


def cx_customer_erased(s: Story) -> None:
    """A customer is erased; afterwards only the tax records are touched."""
    cx_signup(s, marketing=False, personalize=False)
    cx_sessions(s, s.rng.randint(1, 4), marketing=False, personalize=False)
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


def cx_long_standing(s: Story, events: int, span: timedelta) -> None:
    """A customer from before the demo began, chatting with support at a steady pace."""
    step = span / events
    for _ in range(events):
        s.now += step - timedelta(seconds=1)
        s.access("whatsapp-inbox", CX_INBOX, CX_CHAT, SUPPORT, CONTRACT)


def cx_chats_for_ads(s: Story) -> None:
    """WhatsApp messages feed the ad audience builder."""
    cx_signup(s, marketing=True, personalize=False)
    s.wait(DAY, 30 * DAY)
    s.access("whatsapp-inbox", CX_INBOX, CX_CHAT, SUPPORT, CONTRACT)
    s.wait(HOUR, 5 * DAY)
    s.access("ads", CX_AUDIENCE, (WHATSAPP, PURCHASES), TARGETED, CONSENT)


def cx_promo_without_consent(s: Story) -> None:
    """A promotional SMS goes to a customer who refused marketing."""
    cx_signup(s, marketing=False, personalize=False)
    s.wait(DAY, 30 * DAY)
    sms = "marketing.communications.sms"
    s.access("marketing", CX_PROMO, ("user.contact.phone_number",), sms, LI)


def cx_chats_to_unvetted_bot(s: Story) -> None:
    """WhatsApp chats are sent to a chatbot vendor that was never vetted."""
    cx_signup(s, marketing=False, personalize=False)
    s.wait(DAY, 30 * DAY)
    s.share("whatsapp-inbox", CX_INBOX, CX_CHAT, SUPPORT, CONTRACT, CX_UNVETTED_BOT)


def cx_card_data_in_clear(s: Story) -> None:
    """Card data goes to the acquirer unencrypted."""
    cx_signup(s, marketing=False, personalize=False)
    s.wait(DAY, 30 * DAY)
    s.share("payments", CX_CHECKOUT, (CARD,), PAYMENT, CONTRACT, CX_ACQUIRER, encrypted=False)


def cx_personalisation_after_withdrawal(s: Story) -> None:
    """Recommendations keep profiling after the customer withdrew consent."""
    cx_signup(s, marketing=False, personalize=True)
    s.wait(DAY, 20 * DAY)
    s.access("recommendations", CX_RECOMMENDER, (PURCHASES,), PROFILED, CONSENT)
    s.wait(DAY, 20 * DAY)
    s.consent("personalize", "withdrawn", via="preferences")
    s.wait(DAY, 10 * DAY)
    s.access("recommendations", CX_RECOMMENDER, (PURCHASES,), PROFILED, CONSENT)


def cx_erased_customer_read(s: Story) -> None:
    """Support reads the chats of an erased customer."""
    cx_signup(s, marketing=False, personalize=False)
    cx_sessions(s, 1, marketing=False, personalize=False)
    s.wait(DAY, 10 * DAY)
    request = s.request("erasure")
    s.wait(DAY, 10 * DAY)
    s.fulfil(request, "erasure")
    s.wait(DAY, 30 * DAY)
    s.access("support", ("employee", s.someone("agent")), CX_CHAT, SUPPORT, CONTRACT)


def cx_card_data_for_analytics(s: Story) -> None:
    """Card data feeds the revenue dashboards."""
    cx_signup(s, marketing=False, personalize=False)
    s.wait(DAY, 30 * DAY)
    dashboards: Actor = ("service", "revenue-dashboards")
    s.access("insights", dashboards, (CARD, PURCHASES), STATS, LI)


COMPLIANT = (
    scenario(cx_customer, weight=4),
    scenario(cx_customer_erased, weight=1),
)

VIOLATING = (
    scenario(cx_chats_for_ads, "CX-WA-ADS-001"),
    scenario(cx_promo_without_consent, "CX-MKT-002"),
    scenario(cx_chats_to_unvetted_bot, "CX-WA-VENDOR-003"),
    scenario(cx_card_data_in_clear, "CX-ENC-004"),
    scenario(cx_personalisation_after_withdrawal, "CX-CONSENT-005"),
    scenario(cx_erased_customer_read, "CX-ERASED-006"),
    scenario(cx_card_data_for_analytics, "CX-PAY-007"),
)
