"""The dashboard in headless Chromium, over the real pipeline: the page loads, a newly emitted
violation appears live, the filters narrow the feed, drill-down shows the lineage, and triage
persists across a reload. Screenshots of each step land in the test's tmp dir.

The pipeline's tests run in order on one pipeline and one page, as an analyst's session would;
paging past 100 rows is tested on a store seeded with more, served in this process.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

from config.settings import Settings
from events.emitter import Emitter
from privtrail.api import create_app
from privtrail.brokers import EmbeddedBroker
from privtrail.client import ApiClient
from privtrail.credentials import api_client, local_token
from sinks.clickhouse.store import Store
from tests.e2e.conftest import Pipeline, pipeline_settings
from tests.support import CHROMIUM, CHROMIUM_FLAGS, LOCALHOST, free_port, running_process
from tests.unit.chdb_store import store_dsn, violation
from tests.unit.tokens import bearer, token_of

# How long the page may take to show what the pipeline stored: a judged event reaches the
# store within seconds, and the feed polls every 2 s.
SHOWN_MS = 60_000

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is missing: .ci/run installs it"
    ),
]


@dataclass
class Session:
    pipeline: Pipeline
    page: Page
    shots: Path
    # The real subject ids emitted, which the page must never show.
    subjects: list[str] = field(default_factory=list)
    # Requests the page made to anywhere but the API: the page must work offline.
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=path)
        return path


def minutes_ago(minutes: int) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


def emit_whatsapp_ads(settings: Settings, subject: str) -> None:
    """connectx: a subject's WhatsApp messages read for ad targeting (CX-WA-ADS-001,
    critical), after an ordinary inbox read of the same data (compliant)."""
    with Emitter(settings.bootstrap, source="/e2e", topic=settings.topics.events) as emitter:
        emitter.consent_changed(
            org="connectx",
            subject_id=subject,
            subject_kind="customer",
            data_use="marketing",
            status="given",
            time=minutes_ago(30),
        )
        emitter.data_accessed(
            org="connectx",
            subject_id=subject,
            subject_kind="customer",
            actor_kind="service",
            actor_id="inbox",
            data_categories=["user.content.private"],
            data_use="essential.service",
            time=minutes_ago(20),
        )
        emitter.data_accessed(
            org="connectx",
            subject_id=subject,
            subject_kind="customer",
            actor_kind="service",
            actor_id="ads-ranker",
            data_categories=["user.content.private.whatsapp_message"],
            data_use="marketing.advertising.first_party.targeted",
            time=minutes_ago(10),
        )


def emit_employer_share(settings: Settings, subject: str) -> None:
    """xpertaize: an applicant who turned auto-sharing off is shared with an employer
    (XA-EMP-001, high)."""
    with Emitter(settings.bootstrap, source="/e2e", topic=settings.topics.events) as emitter:
        emitter.consent_changed(
            org="xpertaize",
            subject_id=subject,
            subject_kind="job_applicant",
            data_use="employment.recruitment",
            status="given",
            time=minutes_ago(6),
        )
        emitter.settings_changed(
            org="xpertaize",
            subject_id=subject,
            subject_kind="job_applicant",
            auto_share_with_employers=False,
            time=minutes_ago(5),
        )
        emitter.shared(
            org="xpertaize",
            subject_id=subject,
            subject_kind="job_applicant",
            actor_kind="service",
            actor_id="matcher",
            data_categories=["user.name"],
            data_use="employment.recruitment",
            legal_basis="consent",
            recipient_id="acme-hr",
            recipient_kind="employer",
            recipient_country="MA",
            encrypted=True,
            time=minutes_ago(4),
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS))
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def session(
    kafka_broker: EmbeddedBroker, browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Session]:
    """The store/API process and a worker on the real broker, one violation stored, and the
    dashboard open at 1400x1000."""
    tmp_path = tmp_path_factory.mktemp("dashboard")
    settings = pipeline_settings(kafka_broker, tmp_path)
    serve_argv = [sys.executable, "-m", "privtrail", "serve"]
    with running_process(serve_argv, tmp_path / "serve.log", env=settings.as_env()) as serve:
        pipeline = Pipeline(settings, api_client(settings), [serve])
        pipeline.wait_for(lambda: _answers(pipeline.api), "the query API", timeout=60)
        with pipeline.worker():
            subject = f"cx-{uuid.uuid4().hex[:8]}"
            emit_whatsapp_ads(settings, subject)
            pipeline.wait_for(lambda: pipeline.api.violations(), "the first violation")
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            running = Session(pipeline, page, tmp_path / "screenshots", [subject])
            running.shots.mkdir()
            _watch(running, settings.api_url)
            page.goto(settings.api_url + "/")
            _sign_in(page, local_token(settings) or "")
            yield running
            context.close()


def _sign_in(page: Page, token: str) -> None:
    """Sign in through the page's login field, as a user pasting their token would."""
    expect(page.locator("#login")).to_be_visible(timeout=SHOWN_MS)
    expect(page.locator("#login-note")).to_have_text("sign in with an API token")
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    expect(page.locator("#signed-in")).to_be_visible(timeout=SHOWN_MS)
    expect(page.locator("#login")).to_be_hidden()


def _auth(session: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {local_token(session.pipeline.settings)}"}


def _answers(api: ApiClient) -> bool:
    try:
        api.health()
    except Exception:
        return False
    return True


def _watch(session: Session, base: str) -> None:
    def route(route: Route, request: Request) -> None:
        if request.url.startswith(base):
            route.continue_()
        else:
            session.outside.append(request.url)
            route.abort()

    session.page.route("**/*", route)
    session.page.on("pageerror", lambda error: session.errors.append(str(error)))
    session.page.on(
        "console", lambda m: session.errors.append(m.text) if m.type == "error" else None
    )


def test_the_page_loads_with_counters_chart_and_top_rules_above_the_fold(
    session: Session,
) -> None:
    page = session.page
    expect(page.locator("#violations tr", has_text="CX-WA-ADS-001")).to_be_visible(timeout=SHOWN_MS)
    expect(page.locator("#c-open")).to_have_text("1", timeout=SHOWN_MS)
    expect(page.locator("#c-critical")).to_have_text("1")
    expect(page.locator("#rules")).to_contain_text("CX-WA-ADS-001")
    expect(page.locator("#chart rect.critical")).to_have_count(1)
    page.locator("[data-range='7d']").click()
    expect(page.locator("#chart-note")).to_contain_text("1 in the last 7d, 6 h per bar")
    session.shot("1-loaded")

    for panel in ("#counters", "#chart", "#rules"):
        box = page.locator(panel).bounding_box()
        assert box is not None and box["y"] + box["height"] <= 1000, panel
    row = page.locator("#violations tr", has_text="CX-WA-ADS-001")
    assert "ads-ranker" in row.inner_text()
    assert session.outside == []
    assert session.errors == []


def test_a_newly_emitted_violation_appears_live(session: Session) -> None:
    page = session.page
    expect(page.locator("#violations tr", has_text="CX-WA-ADS-001")).to_be_visible(timeout=SHOWN_MS)

    subject = f"xa-{uuid.uuid4().hex[:8]}"
    session.subjects.append(subject)
    emit_employer_share(session.pipeline.settings, subject)

    fresh = page.locator("#violations tr", has_text="XA-EMP-001")
    expect(fresh).to_be_visible(timeout=SHOWN_MS)
    expect(page.locator("#c-open")).to_have_text("2", timeout=SHOWN_MS)
    session.shot("2-live")
    assert "employer:acme-hr" in fresh.inner_text()
    # The newest by event time comes first, with its detection time beside it.
    first = page.locator("#violations tr").first
    assert "XA-EMP-001" in first.inner_text()
    assert len(first.locator("td").all()) == 6


def test_the_filters_narrow_the_feed(session: Session) -> None:
    page = session.page
    rows = page.locator("#violations tr")
    expect(rows).to_have_count(2, timeout=SHOWN_MS)

    page.select_option("#org", "xpertaize")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("XA-EMP-001")
    expect(page.locator("#c-open")).to_have_text("1")
    expect(page.locator("#rules tr")).to_have_count(1)
    page.select_option("#severity", "critical")
    expect(page.locator("#violations-empty")).to_be_visible()
    session.shot("3-filtered-empty")
    page.select_option("#org", "")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("CX-WA-ADS-001")
    expect(page.locator("#c-open")).to_have_text("2")
    session.shot("3-filtered")
    csv_link = page.locator("#export-csv").get_attribute("href") or ""
    assert "severity=critical" in csv_link
    url = session.pipeline.settings.api_url + csv_link
    assert page.request.get(url).status == 401  # the link alone opens nothing
    exported = page.request.get(url, headers=_auth(session)).text()
    assert exported.count("CX-WA-ADS-001") == 1 and "XA-EMP-001" not in exported

    page.select_option("#severity", "")
    expect(rows).to_have_count(2)
    page.fill("#rule", "XA-NOSUCH-1")
    page.press("#rule", "Enter")
    expect(page.locator("#feed-error")).to_contain_text("rule: unknown rule id 'XA-NOSUCH-1'")
    page.fill("#rule", "xa-emp-001")
    page.press("#rule", "Enter")
    expect(rows).to_have_count(1)
    expect(page.locator("#feed-error")).to_be_hidden()
    expect(page.locator("#chart svg")).to_be_visible()
    # The browser logs each refused request: those of the bad rule are the only errors.
    assert session.errors and all("status of 422" in error for error in session.errors)
    session.errors.clear()
    page.fill("#rule", "")
    page.press("#rule", "Enter")
    expect(rows).to_have_count(2)


def test_drill_down_shows_the_lineage_event_and_policy_sentence(session: Session) -> None:
    page = session.page
    page.locator("#violations tr", has_text="CX-WA-ADS-001").click()

    drawer = page.locator("#drawer")
    expect(drawer).to_be_visible()
    expect(page.locator("#d-policy")).to_contain_text(
        "We do not use WhatsApp message content for advertising purposes."
    )
    expect(page.locator("#d-event")).to_contain_text("ads-ranker")
    timeline = page.locator("#d-timeline li")
    expect(timeline).to_have_count(2)
    expect(timeline.nth(0)).to_contain_text("accessed by service inbox")
    expect(timeline.nth(1)).to_contain_text("broke CX-WA-ADS-001 ← this violation")
    expect(page.locator("#d-others")).to_contain_text("None.")
    session.shot("4-drill-down")
    shown = drawer.inner_text()
    assert not [s for s in session.subjects if s in shown], "a real subject id is shown"


def test_triage_persists_across_a_reload(session: Session) -> None:
    page = session.page
    expect(page.locator("#drawer")).to_be_visible()
    page.fill("#d-analyst", "ann")
    page.fill("#d-note", "ads-ranker reads only public posts since release 4.2")
    page.locator("#d-triage button[value='resolved']").click()
    expect(page.locator("#d-history li")).to_contain_text("resolved by ann")

    page.reload()
    row = page.locator("#violations tr", has_text="CX-WA-ADS-001")
    expect(row).to_contain_text("resolved", timeout=SHOWN_MS)
    expect(row).to_contain_text("ann")
    expect(row).to_contain_text("ads-ranker reads only public posts since release 4.2")
    expect(page.locator("#c-resolved")).to_have_text("1", timeout=SHOWN_MS)
    session.shot("5-triaged")

    page.select_option("#triage", "unresolved")
    expect(page.locator("#violations tr")).to_have_count(1)
    expect(page.locator("#violations tr").first).to_contain_text("XA-EMP-001")
    session.shot("5-unresolved")
    assert session.outside == []
    assert session.errors == []


SEEDED = 230


@pytest.fixture
def seeded_page(browser: Browser) -> Iterator[Page]:
    """The dashboard over a store holding SEEDED violations, served from this process."""
    store = Store.open(store_dsn())
    store.write_violations(
        [violation(f"v{n:03}", occurred_at=minutes_ago(n)) for n in range(SEEDED)]
    )
    port = free_port()
    app = create_app(Settings(pseudonym_key="k"), store)
    auth = bearer(store, "analyst", ("linkxup",))
    server = uvicorn.Server(uvicorn.Config(app, host=LOCALHOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        while not server.started:
            assert thread.is_alive(), "the API server did not start"
            time.sleep(0.05)
        page = context.new_page()
        # Signed in by a link that carries the token in its fragment, which no server sees.
        page.goto(f"http://{LOCALHOST}:{port}/#token={token_of(auth)}")
        expect(page.locator("#signed-in")).to_be_visible(timeout=SHOWN_MS)
        assert "token" not in page.url
        yield page
    finally:
        context.close()
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


def test_loading_more_pages_past_100_rows(seeded_page: Page, tmp_path: Path) -> None:
    page = seeded_page
    rows = page.locator("#violations tr")
    more = page.locator("#more")
    expect(rows).to_have_count(100, timeout=SHOWN_MS)

    more.click()
    expect(rows).to_have_count(200, timeout=SHOWN_MS)
    more.click()
    expect(rows).to_have_count(SEEDED, timeout=SHOWN_MS)
    expect(more).to_be_hidden()
    page.screenshot(path=tmp_path / "paged.png", full_page=True)

    shown = page.eval_on_selector_all(
        "#violations tr", "rows => rows.map(r => r.dataset.violation)"
    )
    assert shown == [f"v{n:03}" for n in range(SEEDED)]
    link = page.locator("#export-json").get_attribute("href") or ""
    # The token the page keeps for this tab's session.
    token = page.evaluate("sessionStorage.getItem('privtrail.token')")
    headers = {"Authorization": f"Bearer {token}"}
    exported = page.request.get(page.url.rstrip("/") + link, headers=headers).json()
    assert [row["violation_id"] for row in exported] == shown
