"""The API's access log under the hash chains: tampered with SQL on a real chDB store."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from privtrail.api import create_app
from sinks.access import AccessEntry
from sinks.clickhouse.access import ACCESS_LOG, access_entries, append_access, ensure_access_tables
from sinks.clickhouse.store import Store
from sinks.integrity.chain import ACCESS_CHAIN
from sinks.integrity.ledger import Ledger
from sinks.integrity.source import Sources
from sinks.integrity.tables import CHAIN, last_entry, read_entries, write_entries
from sinks.integrity.verify import VerifyReport, verify
from tests.unit.chdb_store import T0, audit, store_dsn
from tests.unit.test_integrity import AUDIT, FakeSource, Published, Trail, found
from tests.unit.tokens import bearer


class Stopped(Exception):
    """The serve process gone between writing an access row's chain entry and the row."""


def stop(row: AccessEntry) -> None:
    raise Stopped


class AccessTrail(Trail):
    def request(
        self,
        endpoint: str = "/violations",
        at_minute: int = 0,
        store_row: Callable[[AccessEntry], None] | None = None,
    ) -> AccessEntry:
        """One API request's access-log row, written as the serve process writes it."""
        entry = AccessEntry(
            access_id=str(uuid.uuid4()),
            at=T0 + timedelta(minutes=at_minute),
            token_id="tok-1",
            role="auditor",
            method="GET",
            endpoint=endpoint,
            orgs=["linkxup"],
            subject_pseudonym="pseudo-1" if endpoint.startswith("/lineage") else None,
            status=200,
            client="127.0.0.1",
        )
        self.ledger.append(ACCESS_CHAIN, entry, store_row or partial(append_access, self.store))
        return entry

    def verify_live(self) -> VerifyReport:
        """Verify as GET /verify does in the serve process: with the running Ledger."""
        signer = self.ledger.signer
        live = Sources(self.source, self.ledger)
        return verify(self.store, signer.public_key, signer.key_id, live)


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[AccessTrail]:
    store = Store.open(store_dsn())
    ensure_access_tables(store)
    source = FakeSource()
    settings = Settings(
        data_dir=tmp_path, integrity_checkpoint_records=1_000_000, pseudonym_key="test-key"
    )
    yield AccessTrail(store, Ledger(settings, store, Published(source)), source)
    store.close()


def requested(trail: AccessTrail, count: int = 4) -> list[AccessEntry]:
    trail.store_message(AUDIT, 0, audit("e1"))
    return [trail.request(at_minute=n) for n in range(count)]


def test_a_clean_access_log_after_many_requests_verifies(trail: AccessTrail) -> None:
    entries = requested(trail, 200)
    trail.ledger.checkpoint()
    entries += [trail.request("/lineage/{subject_id:path}") for _ in range(50)]
    for report in (trail.verify(), trail.verify_live()):
        assert report.findings == []
        assert (report.rows_checked, report.chains) == (251, 2)
    chained = [e for e in read_entries(trail.store) if e.chain == ACCESS_CHAIN]
    assert [e.row_id for e in chained] == [e.access_id for e in entries]
    assert [e.offset for e in chained] == list(range(250))


def test_an_edited_access_row_is_named(trail: AccessTrail) -> None:
    entries = requested(trail)
    trail.ledger.checkpoint()
    trail.sql(
        f"ALTER TABLE {{db}}.{ACCESS_LOG} UPDATE subject_pseudonym = 'someone-else' "
        f"WHERE access_id = '{entries[1].access_id}'"
    )
    assert found(trail.verify()) == {("edited", ACCESS_LOG, entries[1].access_id)}


def test_a_deleted_access_row_is_named(trail: AccessTrail) -> None:
    entries = requested(trail)
    trail.ledger.checkpoint()
    trail.sql(f"ALTER TABLE {{db}}.{ACCESS_LOG} DELETE WHERE access_id = '{entries[2].access_id}'")
    assert found(trail.verify()) == {("deleted", ACCESS_LOG, entries[2].access_id)}


def test_a_forged_access_row_is_named_as_inserted(trail: AccessTrail) -> None:
    requested(trail)
    trail.ledger.checkpoint()
    forged = AccessEntry(
        **{**trail.request().model_dump(), "access_id": "forged", "token_id": "tok-2"}
    )
    append_access(trail.store, forged)
    assert found(trail.verify()) == {("inserted", ACCESS_LOG, "forged")}


def test_reordered_access_entries_are_named(trail: AccessTrail) -> None:
    entries = requested(trail)
    trail.ledger.checkpoint()
    # Swap the entries of the second and third requests: rows stay, their order changes.
    swapped = [
        {**e.model_dump(), "seq": 5 - e.seq}
        for e in read_entries(trail.store)
        if e.chain == ACCESS_CHAIN and e.seq in (2, 3)
    ]
    trail.sql(
        f"ALTER TABLE {{db}}.{CHAIN.name} DELETE WHERE chain = '{ACCESS_CHAIN}' AND seq IN (2, 3)"
    )
    write_entries(trail.store, swapped)
    findings = found(trail.verify())
    assert ("reordered", ACCESS_LOG, entries[1].access_id) in findings
    assert ("edited", None, f"{ACCESS_CHAIN}#1..#4") in findings


def test_an_unsigned_tail_cut_off_is_named_by_the_running_ledger(trail: AccessTrail) -> None:
    requested(trail)
    trail.ledger.checkpoint()
    tail = [trail.request("/lineage/{subject_id:path}") for _ in range(2)]
    ids = ", ".join(f"'{e.access_id}'" for e in tail)
    # The requests after the last checkpoint, rows and chain entries alike.
    trail.sql(f"ALTER TABLE {{db}}.{ACCESS_LOG} DELETE WHERE access_id IN ({ids})")
    trail.sql(f"ALTER TABLE {{db}}.{CHAIN.name} DELETE WHERE row_id IN ({ids})")
    assert trail.verify().findings == []  # the store alone is consistent again
    assert found(trail.verify_live()) == {("truncated", ACCESS_LOG, e.access_id) for e in tail}


def test_a_signed_tail_cut_off_is_named_by_its_numbers(trail: AccessTrail) -> None:
    entries = requested(trail)
    trail.ledger.checkpoint()
    trail.sql(f"ALTER TABLE {{db}}.{ACCESS_LOG} DELETE WHERE access_id = '{entries[3].access_id}'")
    trail.sql(f"ALTER TABLE {{db}}.{CHAIN.name} DELETE WHERE row_id = '{entries[3].access_id}'")
    assert ("truncated", None, f"{ACCESS_CHAIN} offsets 3..3") in found(trail.verify())


def test_an_org_scoped_verify_leaves_the_access_log_out(trail: AccessTrail) -> None:
    entries = requested(trail)
    trail.sql(f"ALTER TABLE {{db}}.{ACCESS_LOG} DELETE WHERE access_id = '{entries[0].access_id}'")
    report = trail.verify(org="linkxup")
    assert report.findings == []
    assert len(access_entries(trail.store, None, None, None, None, None, 10)) == 3


def test_requests_to_the_api_are_chained_by_the_serve_process_ledger(trail: AccessTrail) -> None:
    app = create_app(trail.ledger.settings, trail.store)
    app.state.ledger = trail.ledger  # as privtrail/serve.py sets it
    headers = bearer(trail.store)
    with TestClient(app) as client:
        for path in ("/violations", "/lineage/subject-7?org=linkxup", "/tokens", "/violations"):
            client.get(path, headers=headers)
        client.get("/violations")  # refused (401), logged and chained all the same
    logged = access_entries(trail.store, None, None, None, None, None, 100)
    chained = [e for e in read_entries(trail.store) if e.chain == ACCESS_CHAIN]
    assert len(logged) == 5
    assert {e.row_id for e in chained} == {e.access_id for e in logged}
    assert trail.verify_live().findings == []
    lineage = next(e for e in logged if e.subject_pseudonym is not None)
    trail.sql(
        f"ALTER TABLE {{db}}.{ACCESS_LOG} UPDATE token_id = 'someone-else' "
        f"WHERE access_id = '{lineage.access_id}'"
    )
    assert found(trail.verify_live()) == {("edited", ACCESS_LOG, lineage.access_id)}


def chained_not_stored(trail: AccessTrail) -> str:
    """A request whose chain entry is written and whose row is not; the row's id."""
    with pytest.raises(Stopped):
        trail.request("/lineage/{subject_id:path}", store_row=stop)
    entry = last_entry(trail.store, ACCESS_CHAIN)
    assert entry is not None
    assert found(trail.verify()) == {("deleted", ACCESS_LOG, entry.row_id)}
    return entry.row_id


def logged_ids(trail: AccessTrail) -> set[str]:
    return {e.access_id for e in access_entries(trail.store, None, None, None, None, None, 100)}


def test_a_row_chained_by_a_process_stopped_before_storing_it_is_stored_on_restart(
    trail: AccessTrail,
) -> None:
    requested(trail)
    lost = chained_not_stored(trail)
    restarted = Ledger(trail.ledger.settings, trail.store, Published(trail.source))
    assert restarted.committed() == {ACCESS_CHAIN: 5}  # loading the chains writes the row
    assert lost in logged_ids(trail)
    assert trail.verify().findings == []


def test_a_row_whose_store_write_failed_is_stored_before_the_next_request(
    trail: AccessTrail,
) -> None:
    requested(trail)
    lost = chained_not_stored(trail)
    after = trail.request()
    assert {lost, after.access_id} <= logged_ids(trail)
    assert trail.verify_live().findings == []


def test_a_chain_table_made_before_rows_were_kept_with_entries_gets_the_column(
    trail: AccessTrail,
) -> None:
    earlier = requested(trail)
    trail.sql(f"ALTER TABLE {{db}}.{CHAIN.name} DROP COLUMN record")
    restarted = Ledger(trail.ledger.settings, trail.store, Published(trail.source))
    later = earlier[0].model_copy(update={"access_id": "later"})
    restarted.append(ACCESS_CHAIN, later, partial(append_access, trail.store))
    entry = last_entry(trail.store, ACCESS_CHAIN)
    assert entry is not None and entry.record is not None
    assert AccessEntry.model_validate_json(entry.record) == later
    assert trail.verify().findings == []
