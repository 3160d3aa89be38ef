"""A parsed event's time is the instant, the offset and the ISO text the producer sent."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from events.models import PrivacyEvent
from tests.unit.test_replay import EVERY_TYPE, parsed


@pytest.mark.parametrize(
    "sent",
    [
        "2026-01-01T09:00:00Z",
        "2026-01-01T11:00:00.250+02:00",
        "2025-12-31T23:30:00-09:30",
        "9999-12-31T23:59:59-12:00",
    ],
)
def test_an_event_time_keeps_its_instant_offset_and_text(sent: str) -> None:
    event: PrivacyEvent = parsed({**EVERY_TYPE[0], "time": sent})
    expected = datetime.fromisoformat(sent)

    assert event.time == expected
    assert event.time.utcoffset() == expected.utcoffset()
    assert event.time.isoformat() == expected.isoformat()
    assert json.loads(event.model_dump_json())["time"] == sent.replace(".250", ".250000")
