"""`privtrail emit` refuses what the worker would dead-letter, before sending anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privtrail.cli import app

EVENT = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "/connectx/cli",
    "type": "privacy.account.changed",
    "time": "9999-12-31T23:59:59Z",
    "data": {
        "org": "connectx",
        "subject": {"id": "cx-1", "kind": "customer"},
        "status": "active",
    },
}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (json.dumps(EVENT).encode(), "invalid event: time: outside the accepted range"),
        (b"[" * 100_000, "invalid event: nested deeper than the limit of 32 levels"),
    ],
    ids=["far-future", "deep-nesting"],
)
def test_emit_refuses_without_force(tmp_path: Path, raw: bytes, reason: str) -> None:
    # No broker is running: a refused event never reaches the point of connecting to one.
    path = tmp_path / "event.json"
    path.write_bytes(raw)
    result = CliRunner().invoke(app, ["emit", str(path)])
    assert result.exit_code == 1, result.output
    assert reason in " ".join(result.stderr.split())
