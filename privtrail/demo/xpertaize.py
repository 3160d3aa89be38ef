"""XpertAIze, an AI recruitment platform: candidates, employers and AI training."""

from __future__ import annotations

from datetime import timedelta

from privtrail.demo.story import (
    CONSENT,
    CONTRACT,
    CV,
    DAY,
    DEADLINE_MARGIN,
    EMAIL,
    HOUR,
    LI,
    NAME_EMAIL,
    OPERATIONS,
    RECRUITMENT,
    SALARY,
    SCC,
    SERVICE,
    STATS,
    Actor,
    Recipient,
    Story,
    scenario,
)

XA_PROFILE = (CV, SALARY, "user.job_title")
XA_SHARED = ("user.name", "user.contact.email", CV)
XA_EMPLOYERS = tuple(
    Recipient(name, "employer", "MA")
    for name in ("ocp-group-talent", "atlas-logistics", "casa-nearshore-tech", "bmce-careers")
)
XA_GPU_CLOUD = Recipient("eu-gpu-cloud", "service_provider", "DE", SCC)
XA_BAROMETER = Recipient("hr-barometer-media", "business_partner", "MA")
XA_OFFSHORE_AI = Recipient("fastinfer-ai", "service_provider", "US")
XA_BROKER = Recipient("leadgen-brokers", "buyer", "MA")
XA_LABELLER = Recipient("crowdlabel-partners", "third_party", "MA")
XA_MATCHER: Actor = ("service", "matcher")
XA_MAILER: Actor = ("service", "mailer")
XA_TRAINER: Actor = ("service", "model-trainer")
XA_GATEWAY: Actor = ("service", "inference-gateway")
XA_INSIGHTS: Actor = ("service", "insights")


def xa_signup(s: Story, *, matching: bool, marketing: bool, auto_share: bool) -> None:
    s.account("created")
    s.wait(timedelta(seconds=30), timedelta(minutes=5))
    s.consent(RECRUITMENT, "given" if matching else "withdrawn")
    if marketing:
        s.consent("marketing.communications", "given")
    s.settings(auto_share_with_employers=auto_share)
    s.wait(timedelta(minutes=1), HOUR)
    s.access("cv-upload", ("service", "cv-parser"), (CV,), SERVICE, CONTRACT)


def xa_sessions(s: Story, sessions: int, *, marketing: bool, auto_share: bool) -> None:
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
            xa_activity(s, marketing=marketing, auto_share=auto_share)


def xa_activity(s: Story, *, marketing: bool, auto_share: bool) -> None:
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


def xa_candidate(s: Story) -> None:
    """A candidate is matched and shared with employers as the sharing setting allows."""
    marketing, auto_share = s.chance(0.4), s.chance(0.7)
    xa_signup(s, matching=True, marketing=marketing, auto_share=auto_share)
    xa_sessions(s, s.rng.randint(3, 10), marketing=marketing, auto_share=auto_share)


def xa_candidate_deletes(s: Story) -> None:
    """A candidate asks for deletion, done within 30 days."""
    xa_signup(s, matching=True, marketing=False, auto_share=True)
    xa_sessions(s, s.rng.randint(1, 4), marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    request = s.request("erasure")
    s.wait(DAY, 25 * DAY)
    s.account("closed")
    s.wait(timedelta(minutes=1), HOUR)
    s.fulfil(request, "erasure")


def xa_candidate_leaves(s: Story) -> None:
    """A candidate closes the account; the data stays within the 36 months allowed."""
    xa_signup(s, matching=True, marketing=False, auto_share=False)
    xa_sessions(s, s.rng.randint(1, 4), marketing=False, auto_share=False)
    s.wait(DAY, 30 * DAY)
    s.account("closed")


def xa_candidate_hold(s: Story) -> None:
    """A closed account is kept for labour court proceedings."""
    xa_signup(s, matching=True, marketing=False, auto_share=True)
    xa_sessions(s, s.rng.randint(1, 3), marketing=False, auto_share=True)
    s.wait(DAY, 10 * DAY)
    s.account("closed")
    s.wait(DAY, 5 * DAY)
    s.hold("placed", "labour court proceedings")


def xa_share_despite_opt_out(s: Story) -> None:
    """A profile goes to an employer after the candidate turned automatic sharing off."""
    xa_signup(s, matching=True, marketing=False, auto_share=False)
    s.wait(DAY, 30 * DAY)
    employer = s.pick(XA_EMPLOYERS)
    s.share("employer-share", XA_MATCHER, XA_SHARED, RECRUITMENT, CONSENT, employer)


def xa_profile_sale(s: Story) -> None:
    """Contact details are sold to a lead broker."""
    xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    sale = "third_party_sharing.sale"
    s.share("partnerships", ("service", "lead-export"), NAME_EMAIL, sale, LI, XA_BROKER)


def xa_newsletter_without_opt_in(s: Story) -> None:
    """Promotional email goes to a candidate who never opted in."""
    xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    s.access("newsletter", XA_MAILER, NAME_EMAIL, EMAIL, CONSENT)


def xa_matching_without_consent(s: Story) -> None:
    """AI matching runs for a candidate who declined it."""
    xa_signup(s, matching=False, marketing=False, auto_share=False)
    s.wait(DAY, 30 * DAY)
    s.access("recruiter-matching", XA_MATCHER, XA_PROFILE, RECRUITMENT, CONSENT)


def xa_offshore_without_safeguard(s: Story) -> None:
    """CVs go to a US inference provider with no transfer safeguard."""
    xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    s.share("ai-hosting", XA_GATEWAY, (CV,), OPERATIONS, CONTRACT, XA_OFFSHORE_AI)


def xa_stale_profile(s: Story) -> None:
    """A profile inactive for more than 36 months is still kept."""
    xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(HOUR, 3 * DAY)
    s.access("recruiter-matching", XA_MATCHER, XA_PROFILE, RECRUITMENT, CONSENT)


def xa_erasure_ignored(s: Story) -> None:
    """A deletion request is left unanswered for more than 30 days."""
    xa_signup(s, matching=True, marketing=False, auto_share=True)
    xa_sessions(s, 1, marketing=False, auto_share=True)
    s.wait(DAY, 20 * DAY)
    s.request("erasure")


def xa_raw_insights(s: Story) -> None:
    """Salary insights are shared per candidate instead of aggregated."""
    xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    s.share("insights", XA_INSIGHTS, (SALARY, "user.job_title"), STATS, LI, XA_BAROMETER)


def xa_cv_to_labeller(s: Story) -> None:
    """CVs are handed to an outside labelling firm to train AI."""
    xa_signup(s, matching=True, marketing=False, auto_share=True)
    s.wait(DAY, 30 * DAY)
    s.share("ai-training", XA_TRAINER, (CV,), "train_ai_system", LI, XA_LABELLER)


COMPLIANT = (
    scenario(xa_candidate, weight=4),
    scenario(xa_candidate_deletes, weight=1.2),
    scenario(xa_candidate_leaves, weight=0.8),
    scenario(xa_candidate_hold, weight=0.3),
)

# The README's tour follows one story of this kind.
SHARE_DESPITE_OPT_OUT = scenario(xa_share_despite_opt_out, "XA-EMP-001")

VIOLATING = (
    SHARE_DESPITE_OPT_OUT,
    scenario(xa_profile_sale, "XA-SALE-002"),
    scenario(xa_newsletter_without_opt_in, "XA-MKT-003"),
    scenario(xa_matching_without_consent, "XA-MATCH-004"),
    scenario(xa_offshore_without_safeguard, "XA-XB-005"),
    # Starts in the run's first days so its 36 months run out before the run ends.
    scenario(xa_stale_profile, "XA-RET-006", not_after=10 * DAY, margin=1100 * DAY),
    scenario(xa_erasure_ignored, "XA-DSAR-007", margin=DEADLINE_MARGIN),
    scenario(xa_raw_insights, "XA-AGG-008"),
    scenario(xa_cv_to_labeller, "XA-AI-009"),
)
