"""Real chDB stores for unit tests.

chDB runs one engine per process on one data directory, so every test of a pytest process
shares one directory, and each test gets a database of its own.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from events.outputs import AuditRecord, Violation
from sinks import Rejected

_root: Path | None = None
_numbers = itertools.count()

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def store_dsn() -> str:
    """A DSN naming a database no other test uses, in this process's data directory."""
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="privtrail-chdb-"))
        atexit.register(shutil.rmtree, _root, ignore_errors=True)
    return f"chdb://{_root}?database=test_{next(_numbers)}"


def audit(event_id: str, **fields: object) -> AuditRecord:
    values: dict[str, object] = {
        "event_id": event_id,
        "event_type": "privacy.data.shared",
        "source": "/linkxup/ads",
        "org": "linkxup",
        "event_time": T0,
        "judged_at": T0 + timedelta(seconds=1),
        "subject_pseudonym": "pseudo-1",
        "subject_kind": "customer",
        "actor_kind": "service",
        "actor_id": "ads-targeting",
        "data_categories": ["user.contact.email", "user.name"],
        "data_use": "marketing.advertising",
        "legal_basis": "consent",
        "recipient_id": "adnet-42",
        "recipient_kind": "ad_network",
        "recipient_country": "FR",
        "encrypted": True,
        "policy_version": "2025.1",
        "partition": 0,
        "offset": 7,
    }
    values.update(fields)
    return AuditRecord.model_validate(values)


def violation(violation_id: str, **fields: object) -> Violation:
    values: dict[str, object] = {
        "violation_id": violation_id,
        "rule_id": "LX-ADNET-001",
        "org": "linkxup",
        "severity": "high",
        "policy_version": "2025.1",
        "policy_section": "3.3",
        "policy_text": "We do not share your personal data with advertising networks.",
        "explanation": "user.contact.email shared with ad_network adnet-42",
        "subject_pseudonym": "pseudo-1",
        "subject_kind": "customer",
        "event_id": "e1",
        "event_type": "privacy.data.shared",
        "occurred_at": T0,
        "detected_at": T0 + timedelta(seconds=1),
        "data_categories": ["user.contact.email"],
        "data_use": "marketing.advertising",
        "actor": "service:ads-targeting",
        "recipient": "ad_network:adnet-42",
    }
    values.update(fields)
    return Violation.model_validate(values)


def rejected(rejection_id: str, **fields: object) -> Rejected:
    values: dict[str, object] = {
        "rejection_id": rejection_id,
        "received_at": T0,
        "source_topic": "privacy.events",
        "source_partition": 1,
        "source_offset": 3,
        "field": "data.recipient.country",
        "reason": "'XX' is not an ISO 3166-1 alpha-2 country code",
        "raw": b'{"id": "e9"}',
        "key": b"subject-9",
    }
    values.update(fields)
    return Rejected.model_validate(values)
