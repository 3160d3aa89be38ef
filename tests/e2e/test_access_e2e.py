"""Access control through the real stack: the store/API process (chDB) and a worker on the real
broker. Zero configuration gives an admin token in the data directory, which the CLI uses; a
token created for one org reads that org only; the access log names who looked at a subject;
a revoked token is refused; and the API refuses to serve beyond loopback with no token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import Settings
from events.emitter import Emitter
from privtrail.brokers import EmbeddedBroker
from privtrail.client import ApiClient, ApiError
from privtrail.credentials import TOKEN_FILE
from tests.e2e.conftest import Pipeline, pipeline_settings
from tests.e2e.test_dashboard import emit_employer_share
from tests.support import running_process, zero_config_client

pytestmark = pytest.mark.e2e


@pytest.fixture
def zero_config(kafka_broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Pipeline]:
    """The store/API process with no token configured, on loopback, and one worker."""
    settings = pipeline_settings(kafka_broker, tmp_path).model_copy(update={"api_token": None})
    serve_argv = [sys.executable, "-m", "privtrail", "serve"]
    with running_process(serve_argv, tmp_path / "serve.log", env=settings.as_env()) as serve:
        pipeline = Pipeline(settings, ApiClient(settings.api_url), [serve])
        pipeline.wait_for(lambda: _healthy(pipeline.api), "the query API", timeout=60)
        pipeline.api = zero_config_client(settings.api_url, settings.data_dir)
        with pipeline.worker():
            yield pipeline


def test_one_orgs_token_reads_only_that_org_and_every_look_is_logged(
    zero_config: Pipeline,
) -> None:
    settings = zero_config.settings
    token_file = settings.data_dir / TOKEN_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    lx_subject, xa_subject = f"lx-{uuid.uuid4().hex[:8]}", f"xa-{uuid.uuid4().hex[:8]}"
    _emit_linkxup_plaintext_card(settings, lx_subject)
    emit_employer_share(settings, xa_subject)
    admin = zero_config.api
    zero_config.wait_for(
        lambda: {v.org for v in admin.violations()} >= {"linkxup", "xpertaize"},
        "a violation of each org",
    )

    # The CLI picks the admin token up from the data directory.
    created = _cli(settings, "token", "create", "--role", "auditor", "--org", "xpertaize",
                   "--name", "xa auditor", "--json")  # fmt: skip
    issued = json.loads(created)
    xa = ApiClient(settings.api_url, token=issued["token"])

    assert {v.org for v in xa.violations()} == {"xpertaize"}
    stats, every = xa.stats(), admin.stats()
    assert set(stats.violations_by_org) == {"xpertaize"}
    assert stats.violations == every.violations_by_org["xpertaize"] < every.violations
    assert 0 < stats.events < every.events and stats.rejected_events is None
    assert {r.org for r in xa.history()} == {"xpertaize"}
    with pytest.raises(ApiError, match="HTTP 403: this token may not read org 'linkxup'"):
        xa.lineage(lx_subject, org="linkxup")
    assert xa.lineage(xa_subject, org="xpertaize").edges

    # Who looked at the xpertaize subject: the auditor's token, by the auditor's own reading.
    log = json.loads(_cli(settings, "access-log", "--subject", xa_subject, "--org", "xpertaize",
                          "--json"))  # fmt: skip
    looks = [e for e in log if e["endpoint"] == "/lineage/{subject_id:path}"]
    assert [(e["token_id"], e["role"], e["status"]) for e in looks] == [
        (issued["token_id"], "auditor", 200)
    ]
    refused = json.loads(_cli(settings, "access-log", "--token", issued["token_id"], "--json"))
    assert ("linkxup", 403) in {(e["orgs"][0], e["status"]) for e in refused if e["orgs"]}
    assert xa_subject not in json.dumps(log) and lx_subject not in json.dumps(refused)

    listed = json.loads(_cli(settings, "token", "list", "--json"))
    assert issued["token_id"] in {t["token_id"] for t in listed}
    assert issued["token"] not in json.dumps(listed)
    _cli(settings, "token", "revoke", issued["token_id"])
    with pytest.raises(ApiError, match=r"HTTP 401: token \w+ was revoked at"):
        xa.violations()


@pytest.mark.parametrize(
    ("pseudonym_key", "refusals"),
    [
        pytest.param(
            "a-private-key",
            ["refusing to serve the API on 0.0.0.0, beyond loopback, with no API token"],
            id="no-token",
        ),
        pytest.param(
            None,
            [
                "binds to 0.0.0.0, beyond this machine, with the built-in development pseudonym "
                "key: set PRIVTRAIL_PSEUDONYM_KEY",
                "also needs a token, unless the store already holds one: set PRIVTRAIL_API_TOKEN",
            ],
            id="no-token-and-the-development-key",
        ),
    ],
)
def test_serving_beyond_loopback_without_a_token_is_refused(
    tmp_path: Path, pseudonym_key: str | None, refusals: list[str]
) -> None:
    settings = Settings(data_dir=tmp_path, api_host="0.0.0.0", api_token=None)
    if pseudonym_key is not None:
        settings = settings.model_copy(update={"pseudonym_key": SecretStr(pseudonym_key)})
    env = {
        **os.environ,
        **settings.as_env(),
        "PRIVTRAIL_KAFKA_BOOTSTRAP": "127.0.0.1:9",  # never reached: it stops before ingest
    }
    env.pop("PRIVTRAIL_API_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "privtrail", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    said = " ".join(done.stderr.split())  # the error is wrapped to the terminal's width
    for refusal in refusals:
        assert refusal in said, done.stderr
    assert not (tmp_path / TOKEN_FILE).exists()


def _healthy(api: ApiClient) -> bool:
    try:
        api.health()
    except ApiError:
        return False
    return True


def _cli(settings: Settings, *args: str) -> str:
    env = {**os.environ, **settings.as_env()}
    env.pop("PRIVTRAIL_API_TOKEN", None)  # the data directory's token, as after `privtrail up`
    done = subprocess.run(
        [sys.executable, "-m", "privtrail", *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"privtrail {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _emit_linkxup_plaintext_card(settings: Settings, subject: str) -> None:
    """linkxup: card data sent to the payment provider unencrypted."""
    with Emitter(settings.bootstrap, source="/e2e", topic=settings.topics.events) as emitter:
        emitter.shared(
            org="linkxup",
            subject_id=subject,
            subject_kind="customer",
            actor_kind="service",
            actor_id="billing",
            data_categories=["user.financial.credit_card"],
            data_use="essential.service.payment_processing",
            recipient_id="payzone-ma",
            recipient_kind="service_provider",
            recipient_country="MA",
            encrypted=False,
            legal_basis="contract",
            time=datetime.now(UTC) - timedelta(minutes=5),
        )
