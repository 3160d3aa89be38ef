"""Hash chains over the stored rows, one per consumed topic-partition.

Each row the store writer takes from a message becomes one chain entry: where it came from
(topic-partition, offset), which row it is (table and ReplacingMergeTree key), the row's
version and digests, and the chain's head after it:

    head[n] = SHA-256(head[n-1] || canonical JSON of entry n)

The offsets of a topic-partition are the one order that never changes: a message consumed
again (a store killed between insert and commit) is at an offset already chained and is not
chained again, while a copy the worker sends again (a worker crash) is a new message at a new
offset and is chained as the new copy it is.

The API's access log has no Kafka offsets: the serve process writes its rows itself, so its chain
(`api/access_log`, a name no topic-partition can have) is numbered by that process, whose Ledger
serialises the appends: an entry's offset is its sequence number from 0, and the chain's order
is the order in which the rows were written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from events.outputs import AuditRecord, Violation
from sinks import Rejected
from sinks.access import AccessEntry
from sinks.clickhouse.access import ACCESS
from sinks.clickhouse.audit_columns import audit_column_values
from sinks.clickhouse.schema import EVENTS, REJECTED_EVENTS, VIOLATIONS, Table
from sinks.integrity.canonical import (
    canonical_json,
    micros,
    payload_digest,
    row_digest,
    row_values,
)

# The tables whose rows are chained, by name.
CHAINED: Mapping[str, Table] = {t.name: t for t in (EVENTS, VIOLATIONS, REJECTED_EVENTS, ACCESS)}
# The chain the serve process numbers itself ("/" is not allowed in a Kafka topic's name).
ACCESS_CHAIN = "api/access_log"
LOCAL_CHAINS = frozenset({ACCESS_CHAIN})
_KEY_SEPARATOR = "\x1f"


class ChainEntry(BaseModel):
    """One stored row's place in its chain (columns of the `integrity_chain` table)."""

    model_config = ConfigDict(frozen=True)

    chain: str
    seq: int
    offset: int
    table: str
    row_key: str
    row_id: str
    org: str
    # The row's ReplacingMergeTree version in microseconds (0: the table has none).
    version: int
    digest: str
    payload: str | None
    head: str
    chained_at: datetime
    # A local chain's row as JSON, kept with its entry: a process stopped between writing the
    # two leaves its row to be written from here (`Ledger`). Not linked: `digest` covers it.
    record: str | None = None

    def linked_fields(self) -> dict[str, Any]:
        """What the head commits to: everything but the head itself, the chaining time and the
        copy of the row."""
        return self.model_dump(exclude={"head", "chained_at", "record"})


@dataclass(frozen=True)
class Head:
    """The end of one chain: its last entry's number, source offset and hash."""

    seq: int
    offset: int
    head: str


def table_of(row: BaseModel) -> Table:
    if isinstance(row, AuditRecord):
        return EVENTS
    if isinstance(row, Violation):
        return VIOLATIONS
    if isinstance(row, Rejected):
        return REJECTED_EVENTS
    if isinstance(row, AccessEntry):
        return ACCESS
    raise TypeError(f"no chained table stores a {type(row).__name__}")


def chain_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def genesis(chain: str) -> Head:
    """The head before a chain's first entry: bound to the chain's name, so no chain's
    entries can be passed off as another's."""
    start = hashlib.sha256(f"privtrail-chain-v1\x1f{chain}".encode()).hexdigest()
    return Head(seq=0, offset=-1, head=start)


def link(previous: str, fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + canonical_json(fields)).hexdigest()


def row_key(table: Table, row: BaseModel | Mapping[str, Any]) -> str:
    values = row_values(row)
    return _KEY_SEPARATOR.join(str(values[column]) for column in table.order_by)


def row_id(table: Table, row: BaseModel | Mapping[str, Any]) -> str:
    """The id a report names a row by: the last column of its key (event, violation or
    rejection id)."""
    return str(row_values(row)[table.order_by[-1]])


def row_version(table: Table, row: BaseModel | Mapping[str, Any]) -> int:
    return micros(row_values(row)[table.version]) if table.version is not None else 0


class Chains:
    """The heads of every chain, extended as messages are consumed."""

    def __init__(self, heads: Mapping[str, Head]) -> None:
        self.heads = dict(heads)

    def append(self, chain: str, row: BaseModel) -> dict[str, Any]:
        """The entry of one row of a local chain, at the next sequence number."""
        head = self.heads.get(chain) or genesis(chain)
        entry = make_entry(chain, head, head.offset + 1, table_of(row), row, datetime.now(UTC))
        entry["record"] = row.model_dump_json()
        self.heads[chain] = Head(entry["seq"], entry["offset"], entry["head"])
        return entry

    def extend(
        self, topic: str, partition: int, offset: int, rows: Sequence[BaseModel] | pa.Table
    ) -> list[dict[str, Any]]:
        """The entries of one consumed message's rows (models, or an AuditBatch's records as
        the columns the store inserts); none if its offset is chained already."""
        name = chain_name(topic, partition)
        head = self.heads.get(name) or genesis(name)
        if offset <= head.offset:
            return []
        now = datetime.now(UTC)
        entries = []
        for table, row in _tabled(rows):
            entry = make_entry(name, head, offset, table, row, now)
            entries.append(entry)
            head = Head(entry["seq"], offset, entry["head"])
        # A message without rows still moves the chain's offset: it was consumed and stored.
        self.heads[name] = Head(head.seq, offset, head.head)
        return entries


def _tabled(
    rows: Sequence[BaseModel] | pa.Table,
) -> Iterator[tuple[Table, BaseModel | Mapping[str, Any]]]:
    if isinstance(rows, pa.Table):
        for values in audit_column_values(rows):
            yield EVENTS, values
    else:
        for row in rows:
            yield table_of(row), row


def make_entry(
    chain: str,
    previous: Head,
    offset: int,
    table: Table,
    row: BaseModel | Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """One entry as the columns of its table (ChainEntry's fields): a plain dict, as this runs
    for every stored row."""
    values = row_values(row)
    fields: dict[str, Any] = {
        "chain": chain,
        "seq": previous.seq + 1,
        "offset": offset,
        "table": table.name,
        "row_key": row_key(table, row),
        "row_id": row_id(table, row),
        "org": str(values.get("org", "")),
        "version": row_version(table, row),
        "digest": row_digest(table, row),
        "payload": payload_digest(table, row),
    }
    head = link(previous.head, fields)
    fields["head"] = head
    fields["chained_at"] = now
    return fields


def recompute(chain: str, entries: Iterable[ChainEntry]) -> Iterable[tuple[ChainEntry, str]]:
    """Each entry with the head recomputed from its predecessors (in the order given)."""
    head = genesis(chain).head
    for entry in entries:
        head = link(head, entry.linked_fields())
        yield entry, head
