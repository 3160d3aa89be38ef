"""Schemathesis against a live `privtrail serve` on its real chDB store, with every check: each
request the OpenAPI schema allows is answered without a server error, each it forbids is
refused, and every answer matches the schema. The run is bounded in examples and time.

It runs twice: with the admin token that serve writes to the data directory on loopback (the
zero-config one, which every route accepts), and without a token, where every operation but
the public ones must answer its documented 401 (schemathesis' ignored_auth check fails any
that answers 2xx, and tests/e2e/schemathesis_hooks.py's `refused_without_token` any other
status)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from privtrail.api import encode_cursor
from privtrail.credentials import TOKEN_FILE
from tests.support import serving_without_broker

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 10
# Without a token every answer is the same 401: a few examples per operation show it.
MAX_EXAMPLES_WITHOUT_TOKEN = 2
# A hard stop, not a budget: schemathesis' --max-time would repeat its phases until it is spent.
MAX_SECONDS = 300
REQUEST_TIMEOUT_SECONDS = 60


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The base URL of `privtrail serve` over a real chDB store, on a free port, and its data
    directory. Both runs fuzz the same server: without a token nothing can change it, and with
    one, every answer must match the schema whatever the store holds."""
    data_dir = tmp_path_factory.mktemp("served")
    with serving_without_broker(data_dir) as url:
        yield url, data_dir


@pytest.mark.timeout(MAX_SECONDS + 90)
@pytest.mark.parametrize("with_token", [True, False], ids=["admin-token", "no-token"])
def test_the_live_api_matches_its_schema(
    served: tuple[str, Path], with_token: bool, tmp_path: Path
) -> None:
    served_url, data_dir = served
    if with_token:
        token = (data_dir / TOKEN_FILE).read_text(encoding="utf-8").strip()
        options = [f"--max-examples={MAX_EXAMPLES}", "-H", f"Authorization: Bearer {token}"]
    else:
        options = [f"--max-examples={MAX_EXAMPLES_WITHOUT_TOKEN}"]
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        f"--config-file={_config(tmp_path)}",
        "run",
        f"{served_url}/openapi.json",
        "--checks=all",
        "--no-color",
        # GET /verify recomputes every chain and asks Kafka (which this server has none of)
        # for the store writer's offsets: seconds, not the 10 s default's fraction.
        f"--request-timeout={REQUEST_TIMEOUT_SECONDS}",
        *options,
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
        "PYTHONPATH": str(REPO),
        "FUZZ_WITHOUT_TOKEN": "" if with_token else "1",
    }
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=MAX_SECONDS
    )
    report = done.stdout[-20_000:] + done.stderr[-5_000:]
    print(done.stdout[done.stdout.rfind("SUMMARY") :])
    assert done.returncode == 0, report


def _config(tmp_path: Path) -> Path:
    # A `cursor` is a token the server issued, not a format a client composes: every request
    # carries a real one (forged ones are a 422: tests/unit/test_rejected_extremes.py,
    # test_dashboard_api.py).
    path = tmp_path / "schemathesis.toml"
    cursor = encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), "e1")
    path.write_text(f'[parameters]\n"query.cursor" = "{cursor}"\n', encoding="utf-8")
    return path
