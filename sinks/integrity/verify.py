"""Recompute the chains and the rows they cover, and name every difference.

What a finding means (`kind`):
- edited: a stored row's values are not those chained for it, or a chain entry does not hash
  to its stored head, or a chain up to a signed head no longer hashes to that head;
- deleted: a chained row is not in the store, or chain entries are missing between others;
- inserted: a stored row no chain entry covers;
- reordered: a chain's entries no longer follow their topic-partition's offsets;
- truncated: rows the store took from Kafka (its committed offsets, or a signed head, say so)
  whose entries and rows are both gone from the end of a chain, named from Kafka's copy; for
  the access log's chain, which no Kafka topic copies, rows past its signed head named from the
  running Ledger's memory when it is a source (GET /verify in the serve process), else by
  their chain positions;
- checkpoint: a stored or published checkpoint whose signature, number or link to the
  previous one does not hold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel

from sinks.clickhouse.schema import Table
from sinks.clickhouse.store import Store
from sinks.integrity.canonical import payload_digest, payload_removed, row_digest
from sinks.integrity.chain import (
    CHAINED,
    LOCAL_CHAINS,
    ChainEntry,
    genesis,
    link,
    row_id,
    row_key,
    table_of,
)
from sinks.integrity.signing import Checkpoint, signature_valid
from sinks.integrity.source import Source
from sinks.integrity.tables import load_heads, read_checkpoints, read_entries, read_rows

FindingKind = Literal["edited", "deleted", "inserted", "reordered", "truncated", "checkpoint"]


class Finding(BaseModel):
    kind: FindingKind
    # The table of the row named (None: a chain or a checkpoint).
    table: str | None
    id: str
    detail: str


class VerifyReport(BaseModel):
    ok: bool
    findings: list[Finding]
    rows_checked: int
    entries_checked: int
    chains: int
    checkpoints_checked: int
    # The newest checkpoint whose signature holds, the anchor of everything before it.
    last_checkpoint: int | None
    last_checkpoint_at: datetime | None
    # Rejected inputs whose raw bytes and key are gone (expired or erased), the rest verified.
    payloads_removed: int
    # What could not be checked, and why (not findings).
    notes: list[str]
    since: datetime | None
    org: str | None


@dataclass
class _Run:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    payloads_removed: int = 0
    rows_checked: int = 0

    def add(self, kind: FindingKind, table: str | None, ident: str, detail: str) -> None:
        self.findings.append(Finding(kind=kind, table=table, id=ident, detail=detail))


def verify(
    store: Store,
    public_key: Ed25519PublicKey,
    key_id: str,
    source: Source | None,
    since: datetime | None = None,
    org: str | None = None,
) -> VerifyReport:
    run = _Run()
    # Read in the order the store writer writes backwards (commit <- checkpoint <- row <- entry),
    # so that what is read while it writes is consistent: an entry at an offset below the
    # committed ones has its row stored, every row read has its entry read, and every signed
    # head read has its entries read.
    committed = _committed(store, source, run)
    if committed is None:
        # Kafka did not answer: asking it again for checkpoints or cut rows would only wait
        # out the same timeout, twice more, on every verify while the broker is down.
        source = None
    stored = {table.name: read_rows(store, table, org) for table in _tables(org)}
    checkpoints = _checkpoints(store, public_key, key_id, source, run)
    chains = _by_chain(read_entries(store))
    for name, entries in chains.items():
        _check_links(name, entries, run)
    for checkpoint in checkpoints:
        _check_signed_heads(checkpoint, chains, run)
    newest = checkpoints[-1] if checkpoints else None
    _check_tails(chains, committed, newest, source, run)
    entries = [e for es in chains.values() for e in es if org is None or e.org == org]
    _check_rows(stored, entries, committed, since, run)
    return VerifyReport(
        ok=not run.findings,
        findings=run.findings,
        rows_checked=run.rows_checked,
        entries_checked=sum(len(es) for es in chains.values()),
        chains=len(chains),
        checkpoints_checked=len(checkpoints),
        last_checkpoint=newest.number if newest else None,
        last_checkpoint_at=newest.created_at if newest else None,
        payloads_removed=run.payloads_removed,
        notes=run.notes,
        since=since,
        org=org,
    )


def _committed(store: Store, source: Source | None, run: _Run) -> dict[str, int] | None:
    """Per chain, the offset below which every row is stored: Kafka's committed offsets, and
    for a local chain the entries stored now (each row is written right after its entry)."""
    if source is None:
        run.notes.append("Kafka not consulted: rows cut from the end of a chain are not looked for")
        return None
    try:
        committed = source.committed()
    except Exception as error:
        run.notes.append(f"cannot read the store writer's committed offsets from Kafka: {error}")
        return None
    # Without the running Ledger, the local chains' ends are those stored.
    heads = load_heads(store)
    stored = {name: heads[name].offset + 1 for name in LOCAL_CHAINS if name in heads}
    return stored | committed


def _by_chain(entries: Iterable[ChainEntry]) -> dict[str, list[ChainEntry]]:
    chains: dict[str, list[ChainEntry]] = defaultdict(list)
    for entry in entries:
        chains[entry.chain].append(entry)
    return dict(chains)


def _check_links(name: str, entries: Sequence[ChainEntry], run: _Run) -> None:
    """Each entry against its stored predecessor: gaps, offsets going back, broken links."""
    previous = genesis(name)
    previous_head, previous_seq, previous_offset = previous.head, 0, previous.offset
    for entry in entries:
        if entry.seq != previous_seq + 1:
            missing = f"#{previous_seq + 1}" + (
                f"..#{entry.seq - 1}" if entry.seq - 1 > previous_seq + 1 else ""
            )
            run.add("deleted", None, f"{name}{missing}", "chain entries missing before this one")
        elif link(previous_head, entry.linked_fields()) != entry.head:
            run.add(
                "edited",
                entry.table,
                entry.row_id,
                f"chain entry {name}#{entry.seq} does not hash to its stored head: the entry "
                "or the one before it was altered",
            )
        if entry.offset < previous_offset:
            run.add(
                "reordered",
                entry.table,
                entry.row_id,
                f"chain entry {name}#{entry.seq} (offset {entry.offset}) follows offset "
                f"{previous_offset}",
            )
        previous_head, previous_seq = entry.head, entry.seq
        previous_offset = max(previous_offset, entry.offset)


def _checkpoints(
    store: Store, public_key: Ed25519PublicKey, key_id: str, source: Source | None, run: _Run
) -> list[Checkpoint]:
    """The checkpoints whose signatures hold, stored or published, by number."""
    stored: dict[int, Checkpoint] = {}
    for row in read_checkpoints(store, key_id):
        checkpoint = row.checkpoint()
        if checkpoint.number != row.number or not signature_valid(public_key, checkpoint):
            run.add("checkpoint", None, f"checkpoint {row.number}", "signature does not verify")
        else:
            stored[checkpoint.number] = checkpoint
    published = _published(source, key_id, public_key, run)
    for number in published:
        if number not in stored:
            run.add(
                "checkpoint",
                None,
                f"checkpoint {number}",
                "signed and published to Kafka, but missing from the store",
            )
    every = {**published, **stored}
    _check_numbering(every, run)
    return [every[number] for number in sorted(every)]


def _published(
    source: Source | None, key_id: str, public_key: Ed25519PublicKey, run: _Run
) -> dict[int, Checkpoint]:
    if source is None:
        return {}
    try:
        found = source.checkpoints(key_id)
    except Exception as error:
        run.notes.append(f"cannot read the published checkpoints from Kafka: {error}")
        return {}
    return {c.number: c for c in found if signature_valid(public_key, c)}


def _check_numbering(checkpoints: dict[int, Checkpoint], run: _Run) -> None:
    numbers = sorted(checkpoints)
    for number in range(1, numbers[-1] if numbers else 1):
        if number not in checkpoints:
            run.add("checkpoint", None, f"checkpoint {number}", "missing: deleted from the store")
    for number in numbers:
        before = checkpoints.get(number - 1)
        if before is not None and checkpoints[number].previous != before.body_hash():
            run.add(
                "checkpoint",
                None,
                f"checkpoint {number}",
                f"does not follow checkpoint {number - 1} (its `previous` hash differs)",
            )


def _check_signed_heads(
    checkpoint: Checkpoint, chains: dict[str, list[ChainEntry]], run: _Run
) -> None:
    """Every chain up to the head a checkpoint signed must hash, from its start, to that head."""
    for name, signed in checkpoint.heads.items():
        entries = chains.get(name, [])
        head = genesis(name).head
        for entry in entries[: signed.seq]:
            head = link(head, entry.linked_fields())
        if len(entries) < signed.seq:
            continue  # cut short: _check_tails names what is missing
        if head != signed.head:
            run.add(
                "edited",
                None,
                f"{name}#1..#{signed.seq}",
                f"the chain no longer hashes to the head signed by checkpoint "
                f"{checkpoint.number}: entries up to #{signed.seq} were altered, removed or "
                "reordered",
            )


def _check_tails(
    chains: dict[str, list[ChainEntry]],
    committed: dict[str, int] | None,
    newest: Checkpoint | None,
    source: Source | None,
    run: _Run,
) -> None:
    """Rows the store took (committed offsets, signed heads) that are gone from a chain's end."""
    ends: dict[str, int] = dict(committed or {})
    for name, signed in (newest.heads if newest else {}).items():
        ends[name] = max(ends.get(name, 0), signed.offset + 1)
    for name, end in sorted(ends.items()):
        entries = chains.get(name, [])
        last = max((e.offset for e in entries), default=-1)
        signed_seq = newest.heads[name].seq if newest and name in newest.heads else 0
        # Past a signed head the cut is certain; past the committed offsets only the rows
        # Kafka shows are (offsets without a message are a transaction's markers).
        certain = len(entries) < signed_seq
        if last + 1 < end or certain:
            _name_cut_rows(name, max(last + 1, 0), end, certain, source, run)


def _name_cut_rows(
    name: str, start: int, end: int, certain: bool, source: Source | None, run: _Run
) -> None:
    where = f"{name} offsets {start}..{end - 1}"
    try:
        messages = source.rows(name, start, end) if source is not None else []
    except Exception as error:
        messages = []
        run.notes.append(f"cannot read {where} from Kafka to name the rows cut off: {error}")
    if certain and not any(rows for _, rows in messages):
        run.add(
            "truncated",
            None,
            where,
            "signed by a checkpoint, then cut from the end of the chain (no copy outside the "
            "store holds these rows to name them)",
        )
    for offset, rows in messages:
        for row in rows:
            table = table_of(row)
            run.add(
                "truncated",
                table.name,
                row_id(table, row),
                f"stored from {name} offset {offset}, then cut from the end of the chain "
                "with its chain entry",
            )


def _tables(org: str | None) -> list[Table]:
    # Rejected inputs and the access log belong to no one org.
    return [t for t in CHAINED.values() if org is None or "org" in t.column_names]


def _check_rows(
    stored: dict[str, list[dict[str, Any]]],
    entries: Sequence[ChainEntry],
    committed: dict[str, int] | None,
    since: datetime | None,
    run: _Run,
) -> None:
    expected: dict[tuple[str, str], list[ChainEntry]] = defaultdict(list)
    for entry in entries:
        expected[(entry.table, entry.row_key)].append(entry)
    for name, rows in stored.items():
        table = CHAINED[name]
        seen = set()
        for row in rows:
            key = row_key(table, row)
            seen.add(key)
            run.rows_checked += 1
            copies = expected.get((table.name, key), [])
            if not copies or _in_scope(copies, since):
                _check_row(table, row, copies, committed, run)
        for (chained, key), copies in expected.items():
            if chained == name and key not in seen:
                _report_deleted(table, copies, committed, since, run)


def _check_row(
    table: Table,
    row: dict[str, Any],
    copies: Sequence[ChainEntry],
    committed: dict[str, int] | None,
    run: _Run,
) -> None:
    ident = row_id(table, row)
    if not copies:
        run.add("inserted", table.name, ident, "no chain entry covers this row")
        return
    if row_digest(table, row) not in _acceptable(copies, committed):
        newest = max(copies, key=lambda e: (e.version, e.seq))
        run.add(
            "edited",
            table.name,
            ident,
            f"stored values differ from the copy chained at {newest.chain}#{newest.seq}",
        )
    if table.bytes_columns and payload_digest(table, row) not in {e.payload for e in copies}:
        if payload_removed(table, row):
            run.payloads_removed += 1
        else:
            run.add("edited", table.name, ident, "stored raw bytes differ from those chained")


def _acceptable(copies: Sequence[ChainEntry], committed: dict[str, int] | None) -> set[str]:
    """Digests the store may show for a row: its newest settled copy (FINAL keeps the highest
    version), or any copy still being stored (above the committed offset)."""
    settled = [e for e in copies if _settled(e, committed)]
    if not settled:
        return {e.digest for e in copies}
    top = max(e.version for e in settled)
    return {e.digest for e in copies if e.version == top or not _settled(e, committed)}


def _settled(entry: ChainEntry, committed: dict[str, int] | None) -> bool:
    return committed is None or entry.offset < committed.get(entry.chain, 0)


def _report_deleted(
    table: Table,
    copies: Sequence[ChainEntry],
    committed: dict[str, int] | None,
    since: datetime | None,
    run: _Run,
) -> None:
    settled = [e for e in copies if _settled(e, committed)]
    if not settled or not _in_scope(settled, since):
        return
    first = settled[0]
    run.add(
        "deleted",
        table.name,
        first.row_id,
        f"chained at {first.chain}#{first.seq}, not in the store",
    )


def _in_scope(copies: Sequence[ChainEntry], since: datetime | None) -> bool:
    """Whether `--since` covers a row: its newest copy was chained at or after it."""
    return since is None or max(e.chained_at for e in copies) >= _utc(since)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
