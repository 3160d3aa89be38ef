"""Hash chains, signed checkpoints and `verify` against a real chDB store, tampered with SQL."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import BaseModel

from config.settings import Settings
from events.outputs import AuditBatch, AuditRecord, Violation
from sinks import Rejected
from sinks.clickhouse.audit_columns import audit_columns
from sinks.clickhouse.schema import EVENTS
from sinks.clickhouse.store import Store
from sinks.integrity.canonical import payload_digest, row_digest
from sinks.integrity.chain import Chains, chain_name, table_of
from sinks.integrity.ledger import Ledger
from sinks.integrity.signing import Checkpoint, SigningKeyError, check_export, load_signer
from sinks.integrity.tables import CHAIN, CHECKPOINTS, read_entries, read_rows, write_entries
from sinks.integrity.verify import VerifyReport, verify
from sinks.messages import StoredRow
from tests.unit.chdb_store import T0, audit, store_dsn, violation
from tests.unit.chdb_store import rejected as stored_rejected

AUDIT, VIOLATIONS_TOPIC, DEADLETTER = "privacy.audit", "privacy.violations", "privacy.deadletter"


@dataclass
class FakeSource:
    """Kafka as verify sees it: committed offsets, the messages, the published checkpoints."""

    messages: dict[str, dict[int, list[StoredRow]]] = field(default_factory=dict)
    published: list[Checkpoint] = field(default_factory=list)

    def committed(self) -> dict[str, int]:
        return {chain: max(offsets) + 1 for chain, offsets in self.messages.items() if offsets}

    def rows(self, chain: str, start: int, end: int) -> list[tuple[int, list[StoredRow]]]:
        stored = self.messages.get(chain, {})
        return [(offset, stored[offset]) for offset in sorted(stored) if start <= offset < end]

    def checkpoints(self, key_id: str) -> list[Checkpoint]:
        return [c for c in self.published if c.key_id == key_id]


@dataclass
class Trail:
    """What the ingest loop does with each message, and a verify against what Kafka holds."""

    store: Store
    ledger: Ledger
    source: FakeSource

    def store_message(self, topic: str, offset: int, *rows: StoredRow, partition: int = 0) -> None:
        self.source.messages.setdefault(chain_name(topic, partition), {})[offset] = list(rows)
        self.ledger.observe(topic, partition, offset, rows)
        self.ledger.write()
        self.store.write_audit([r for r in rows if isinstance(r, AuditRecord)])
        self.store.write_violations([r for r in rows if isinstance(r, Violation)])
        self.store.write_rejected([r for r in rows if isinstance(r, Rejected)])

    def verify(self, **options: object) -> VerifyReport:
        signer = self.ledger.signer
        return verify(
            self.store,
            signer.public_key,
            signer.key_id,
            self.source,
            **options,  # type: ignore[arg-type]
        )

    def sql(self, statement: str) -> None:
        # Mutations synchronously, as an attacker at the console would see them done.
        self.store.command(statement.replace("{db}", self.store.database) + _SYNC(statement))


def _SYNC(statement: str) -> str:
    return (
        " SETTINGS mutations_sync = 2" if " UPDATE " in statement or " DELETE " in statement else ""
    )


class Published:
    def __init__(self, source: FakeSource) -> None:
        self.source = source
        self.closed = False

    def __call__(self, checkpoint: Checkpoint) -> None:
        self.source.published.append(checkpoint)

    def close(self) -> None:
        self.closed = True


def rejected(offset: int, raw: bytes = b'{"id": "bad"}') -> Rejected:
    return stored_rejected(f"privacy.events-0-{offset}", source_offset=offset, raw=raw)


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Trail]:
    store = Store.open(store_dsn())
    source = FakeSource()
    settings = Settings(data_dir=tmp_path, integrity_checkpoint_records=1_000_000)
    yield Trail(store, Ledger(settings, store, Published(source)), source)
    store.close()


def filled(trail: Trail) -> Trail:
    """Events, violations and a rejected input over two partitions and two months."""
    trail.store_message(AUDIT, 0, audit("e1"), audit("e2", subject_pseudonym="pseudo-2"))
    trail.store_message(AUDIT, 1, audit("e3", event_time=T0 + timedelta(days=40)))
    trail.store_message(AUDIT, 0, audit("e4", org="xpertaize"), partition=1)
    trail.store_message(VIOLATIONS_TOPIC, 0, violation("v1"))
    trail.store_message(VIOLATIONS_TOPIC, 1, violation("v2", org="xpertaize"))
    trail.store_message(DEADLETTER, 0, rejected(5))
    return trail


def found(report: VerifyReport) -> set[tuple[str, str | None, str]]:
    return {(f.kind, f.table, f.id) for f in report.findings}


def test_digests_of_written_rows_equal_those_of_the_rows_read_back(trail: Trail) -> None:
    east = timezone(timedelta(hours=5))
    rows: list[BaseModel] = [
        audit(
            "e1",
            judged_at=datetime(2025, 3, 1, 17, 0, 1, 123456, tzinfo=east),
            appended_at=datetime(2025, 3, 1, 12, 0, 0, 987654, tzinfo=UTC),
            details={"b": "2", "a": "1"},
        ),
        violation("v1", deadline=T0 + timedelta(days=30)),
        rejected(1, raw=b"\xff\x00not utf-8"),
    ]
    trail.store.write_audit([rows[0]])  # type: ignore[list-item]
    trail.store.write_violations([rows[1]])  # type: ignore[list-item]
    trail.store.write_rejected([rows[2]])  # type: ignore[list-item]

    for row in rows:
        table = table_of(row)
        [stored] = read_rows(trail.store, table, None)
        assert row_digest(table, stored) == row_digest(table, row)
        assert payload_digest(table, stored) == payload_digest(table, row)


def test_a_clean_history_has_no_findings(trail: Trail) -> None:
    filled(trail).ledger.checkpoint()
    report = trail.verify()
    assert report.findings == []
    assert report.ok
    assert (report.rows_checked, report.entries_checked, report.chains) == (7, 7, 4)
    assert report.checkpoints_checked == 1


def test_an_updated_row_is_named_as_edited(trail: Trail) -> None:
    filled(trail).ledger.checkpoint()
    trail.sql("ALTER TABLE {db}.events UPDATE recipient_country = 'US' WHERE event_id = 'e2'")
    assert found(trail.verify()) == {("edited", "events", "e2")}


def test_deleted_rows_are_named(trail: Trail) -> None:
    filled(trail).ledger.checkpoint()
    trail.sql("ALTER TABLE {db}.violations DELETE WHERE violation_id = 'v1'")
    trail.sql("ALTER TABLE {db}.rejected_events DELETE WHERE 1")
    assert found(trail.verify()) == {
        ("deleted", "violations", "v1"),
        ("deleted", "rejected_events", "privacy.events-0-5"),
    }


def test_a_forged_row_is_named_as_inserted(trail: Trail) -> None:
    filled(trail).ledger.checkpoint()
    trail.store.write_audit([audit("forged")])
    assert found(trail.verify()) == {("inserted", "events", "forged")}


def test_a_forged_newer_copy_of_a_row_is_named_as_edited(trail: Trail) -> None:
    filled(trail).ledger.checkpoint()
    trail.store.write_violations(
        [violation("v1", detected_at=T0 + timedelta(hours=1), status="retracted")]
    )
    assert found(trail.verify()) == {("edited", "violations", "v1")}


def test_a_dropped_partition_names_every_row_it_held(trail: Trail) -> None:
    filled(trail).ledger.checkpoint()
    trail.sql("ALTER TABLE {db}.events DROP PARTITION 202503")
    assert found(trail.verify()) == {
        ("deleted", "events", "e1"),
        ("deleted", "events", "e2"),
        ("deleted", "events", "e4"),
    }


def test_rows_cut_from_the_end_with_their_entries_are_named_from_kafka(trail: Trail) -> None:
    filled(trail).ledger.checkpoint()
    trail.store_message(AUDIT, 2, audit("e5"), audit("e6"))
    trail.store_message(AUDIT, 3, audit("e7"))
    # The tail after the last checkpoint, rows and chain entries alike.
    trail.sql("ALTER TABLE {db}.events DELETE WHERE event_id IN ('e5', 'e6', 'e7')")
    trail.sql(f"ALTER TABLE {{db}}.{CHAIN.name} DELETE WHERE row_id IN ('e5', 'e6', 'e7')")
    assert found(trail.verify()) == {
        ("truncated", "events", "e5"),
        ("truncated", "events", "e6"),
        ("truncated", "events", "e7"),
    }


def test_entries_cut_before_the_last_checkpoint_are_named(trail: Trail) -> None:
    filled(trail)
    trail.store_message(AUDIT, 2, audit("e5"))
    trail.ledger.checkpoint()
    trail.sql("ALTER TABLE {db}.events DELETE WHERE event_id = 'e5'")
    trail.sql(f"ALTER TABLE {{db}}.{CHAIN.name} DELETE WHERE row_id = 'e5'")
    trail.source.messages[chain_name(AUDIT, 0)].pop(2)  # and Kafka no longer holds it
    findings = found(trail.verify())
    assert ("truncated", None, f"{chain_name(AUDIT, 0)} offsets 2..2") in findings


def test_reordered_entries_are_named(trail: Trail) -> None:
    filled(trail).ledger.checkpoint()
    chain = chain_name(AUDIT, 0)
    # Swap e2 (#2, offset 0) and e3 (#3, offset 1): the rows stay, their order changes.
    swapped = [
        {**e.model_dump(), "seq": 5 - e.seq}
        for e in read_entries(trail.store)
        if e.chain == chain and e.seq in (2, 3)
    ]
    trail.sql(f"ALTER TABLE {{db}}.{CHAIN.name} DELETE WHERE chain = '{chain}' AND seq IN (2, 3)")
    write_entries(trail.store, swapped)
    findings = found(trail.verify())
    assert ("reordered", "events", "e2") in findings
    assert all(f[2] in ("e2", "e3") or f[2].startswith(chain) for f in findings)


def test_an_altered_chain_that_rehashes_its_heads_fails_the_signed_head(trail: Trail) -> None:
    filled(trail).ledger.checkpoint()
    chain = chain_name(AUDIT, 0)
    # The row and its entry's digest edited together: only the signature can tell.
    trail.sql("ALTER TABLE {db}.events UPDATE recipient_country = 'US' WHERE event_id = 'e1'")
    [stored] = [r for r in read_rows(trail.store, EVENTS, None) if r["event_id"] == "e1"]
    trail.sql(
        f"ALTER TABLE {{db}}.{CHAIN.name} UPDATE digest = '{row_digest(EVENTS, stored)}' "
        "WHERE row_id = 'e1'"
    )
    findings = found(trail.verify())
    assert ("edited", None, f"{chain}#1..#3") in findings


def test_duplicates_replays_and_retractions_verify(trail: Trail) -> None:
    filled(trail)
    # A store killed between insert and commit consumes the same message again.
    trail.store_message(AUDIT, 1, audit("e3", event_time=T0 + timedelta(days=40)))
    # A worker crash sends an event again, judged later, at a new offset.
    trail.store_message(AUDIT, 2, audit("e1", judged_at=T0 + timedelta(minutes=5)))
    # A retraction: the same violation, newer, with a new status.
    trail.store_message(
        VIOLATIONS_TOPIC,
        2,
        violation("v1", status="retracted", detected_at=T0 + timedelta(hours=2)),
    )
    trail.ledger.checkpoint()
    report = trail.verify()
    assert report.findings == []
    assert report.entries_checked == 9  # the message consumed twice is chained once


def test_a_retraction_rolled_back_is_named(trail: Trail) -> None:
    filled(trail)
    trail.store_message(
        VIOLATIONS_TOPIC,
        2,
        violation("v1", status="retracted", detected_at=T0 + timedelta(hours=2)),
    )
    trail.sql("ALTER TABLE {db}.violations DELETE WHERE status = 'retracted'")
    # The older, open copy shows again: it is chained, but not as the newest.
    assert found(trail.verify()) == {("edited", "violations", "v1")}


def test_raw_bytes_edited_are_found_and_removed_ones_counted(trail: Trail) -> None:
    filled(trail)
    trail.store_message(DEADLETTER, 1, rejected(6))
    trail.sql("ALTER TABLE {db}.rejected_events UPDATE raw = 'other' WHERE source_offset = 5")
    trail.sql(
        "ALTER TABLE {db}.rejected_events UPDATE raw = '', key = NULL WHERE source_offset = 6"
    )
    report = trail.verify()
    assert found(report) == {("edited", "rejected_events", "privacy.events-0-5")}
    assert report.payloads_removed == 1


def test_org_and_since_limit_what_is_reported(trail: Trail) -> None:
    filled(trail)
    trail.sql("ALTER TABLE {db}.events DELETE WHERE event_id IN ('e1', 'e4')")
    assert found(trail.verify(org="xpertaize")) == {("deleted", "events", "e4")}
    assert found(trail.verify(since=datetime.now(UTC) + timedelta(minutes=1))) == set()


def test_checkpoints_are_signed_linked_and_checked(trail: Trail) -> None:
    filled(trail)
    first = trail.ledger.checkpoint()
    trail.store_message(AUDIT, 2, audit("e5"))
    second = trail.ledger.checkpoint()
    assert second.previous == first.body_hash()
    assert second.heads[chain_name(AUDIT, 0)].seq == 4
    public = trail.ledger.signer.public_pem()
    assert check_export(public, [first, second]) == []
    forged = second.model_copy(update={"heads": {}})
    assert check_export(public, [first, forged]) == ["checkpoint 2: signature does not verify"]


def test_a_deleted_checkpoint_is_found_from_its_published_copy(trail: Trail) -> None:
    filled(trail)
    trail.ledger.checkpoint()
    trail.ledger.tick()  # publishes
    trail.sql(f"ALTER TABLE {{db}}.{CHECKPOINTS.name} DELETE WHERE 1")
    assert found(trail.verify()) == {("checkpoint", None, "checkpoint 1")}  # Kafka kept it
    trail.source.published.clear()
    trail.store_message(AUDIT, 2, audit("e5"))
    trail.ledger.checkpoint()
    assert ("checkpoint", None, "checkpoint 1") in found(trail.verify())


def test_a_checkpoint_is_due_after_n_rows(tmp_path: Path) -> None:
    store = Store.open(store_dsn())
    source = FakeSource()
    settings = Settings(data_dir=tmp_path, integrity_checkpoint_records=3)
    trail = Trail(store, Ledger(settings, store, Published(source)), source)
    trail.store_message(AUDIT, 0, audit("e1"), audit("e2"))
    trail.ledger.tick()
    assert source.published == []
    trail.store_message(AUDIT, 1, audit("e3"))
    trail.ledger.tick()
    assert [c.number for c in source.published] == [1]
    store.close()


def test_the_default_key_is_made_once_in_the_data_dir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        first = load_signer(None, tmp_path)
        second = load_signer(None, tmp_path)
    assert first.key_id == second.key_id
    key_file = tmp_path / "integrity" / "signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sum("generated an Ed25519 signing key" in r.message for r in caplog.records) == 1
    assert load_signer(key_file, tmp_path / "elsewhere").key_id == first.key_id


def test_a_configured_key_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match=r"missing\.pem"):
        load_signer(tmp_path / "missing.pem", tmp_path)


def test_an_audit_batch_read_as_columns_chains_as_its_records_do() -> None:
    """The store reads the worker's AuditBatch messages straight into Arrow columns: the chain
    entries it makes of them must be those of the same records as models, or verify would
    name every event the fast path stored as edited."""
    records = [
        audit("e1", details={"why": "consent withdrawn", "at": "09:00"}),
        audit(
            "e2",
            event_time=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
        audit("e3", violated_rules=["LX-ADNET-001"], recipient_id=None),
    ]
    message = AuditBatch(records=records).model_dump_json().encode()
    columns = audit_columns(message)
    assert columns is not None, "the worker's form takes the column path"
    from_models = Chains({}).extend(AUDIT, 0, 5, records)
    from_columns = Chains({}).extend(AUDIT, 0, 5, columns)
    for entry in (*from_models, *from_columns):
        entry.pop("chained_at")
    assert from_columns == from_models
