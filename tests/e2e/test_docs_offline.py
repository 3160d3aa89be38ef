"""The API docs at /docs render in a real browser that can reach nothing but 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import CHROMIUM, CHROMIUM_FLAGS, serving_without_broker

pytestmark = pytest.mark.e2e

OFFLINE_FLAGS = (
    # Every host name but the loopback address fails to resolve: a CDN asset cannot load.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Lets the page's scripts fetch the schema and draw it before the DOM is dumped.
    "--virtual-time-budget=15000",
)
CHROMIUM_COMMAND = (CHROMIUM, *CHROMIUM_FLAGS, *OFFLINE_FLAGS)


@pytest.mark.timeout(180)
def test_swagger_ui_renders_the_operations_without_any_network(tmp_path: Path) -> None:
    with serving_without_broker(tmp_path) as url:
        dom = render(f"{url}/docs", tmp_path)
        assets = [httpx.get(f"{url}{path}") for path in _local_assets(dom)]

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


def _local_assets(dom: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["'](/[^"']+\.(?:js|css|png))["']""", dom)
