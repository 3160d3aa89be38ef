"""The API docs at /docs render in a real browser that can reach nothing but 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from privtrail.client import ApiClient, ApiError
from tests.support import CHROMIUM, CHROMIUM_FLAGS, free_port, log_tail, running_process

pytestmark = pytest.mark.e2e

OFFLINE_FLAGS = (
    # Every host name but the loopback address fails to resolve: a CDN asset cannot load.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Lets the page's scripts fetch the schema and draw it before the DOM is dumped.
    "--virtual-time-budget=15000",
)
CHROMIUM_COMMAND = (CHROMIUM, *CHROMIUM_FLAGS, *OFFLINE_FLAGS)
START_SECONDS = 60.0


@pytest.mark.timeout(180)
def test_swagger_ui_renders_the_operations_without_any_network(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PRIVTRAIL_DATA_DIR": str(tmp_path),
        "PRIVTRAIL_API_PORT": str(port),
        # Nothing listens there: the API answers while ingest waits for a broker.
        "PRIVTRAIL_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "privtrail", "serve"]
    with running_process(argv, log, env=env) as serve:
        wait_until_up(ApiClient(f"http://127.0.0.1:{port}"), serve, log)
        dom = render(f"http://127.0.0.1:{port}/docs", tmp_path)
        assets = [httpx.get(f"http://127.0.0.1:{port}{url}") for url in _local_assets(dom)]

    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert {"/violations", "/lineage/{subject_id}", "/rejected", "/stats"} <= paths, dom[:2000]
    assert assets and all(asset.status_code == 200 for asset in assets)


def render(url: str, tmp_path: Path) -> str:
    profile = tmp_path / "chromium-profile"
    done = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            *OFFLINE_FLAGS,
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def wait_until_up(api: ApiClient, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        assert process.poll() is None, f"serve exited early:\n{log_tail(log)}"
        try:
            api.health()
            return
        except ApiError:
            assert time.monotonic() < deadline, f"serve did not answer:\n{log_tail(log)}"
            time.sleep(0.2)


def _local_assets(dom: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["'](/[^"']+\.(?:js|css|png))["']""", dom)
