"""The store's integrity tables, and the reads and writes of chain entries and checkpoints."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from sinks.clickhouse.access import ensure_access_tables
from sinks.clickhouse.arrow import arrow_rows, arrow_schema
from sinks.clickhouse.schema import LABEL, TIME, Table
from sinks.clickhouse.store import Store
from sinks.integrity.chain import ChainEntry, Head
from sinks.integrity.signing import Checkpoint

CHAIN = Table(
    name="integrity_chain",
    columns=(
        ("chain", LABEL),
        ("seq", "Int64"),
        ("offset", "Int64"),
        ("table", LABEL),
        ("row_key", "String"),
        ("row_id", "String"),
        ("org", LABEL),
        ("version", "Int64"),
        ("digest", "String"),
        ("payload", "Nullable(String)"),
        ("head", "String"),
        ("chained_at", TIME),
        ("record", "Nullable(String)"),
    ),
    # An entry written twice (an insert retried after a lost answer) is kept once.
    order_by=("chain", "seq"),
)

CHECKPOINTS = Table(
    name="integrity_checkpoints",
    columns=(
        ("key_id", LABEL),
        ("number", "Int64"),
        ("created_at", TIME),
        ("body", "String"),
        ("signature", "String"),
    ),
    order_by=("key_id", "number"),
)

# Chain entries read per query: bounds one answer's size, not the chain's length.
ENTRY_PAGE = 50_000


class StoredCheckpoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    key_id: str
    number: int
    created_at: datetime
    body: str
    signature: str

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> StoredCheckpoint:
        return cls(
            key_id=checkpoint.key_id,
            number=checkpoint.number,
            created_at=checkpoint.created_at,
            body=checkpoint.body().decode(),
            signature=checkpoint.signature,
        )

    def checkpoint(self) -> Checkpoint:
        return Checkpoint.model_validate_json(self.body).model_copy(
            update={"signature": self.signature}
        )


def ensure_integrity_schema(store: Store) -> None:
    for table in (CHAIN, CHECKPOINTS):
        store.create_table(table)
    ensure_access_tables(store)  # a chained table that verify reads, whether or not any API ran


def write_entries(store: Store, entries: Sequence[Mapping[str, Any]]) -> None:
    """Insert entries given as column dicts (ChainEntry's fields), as the ingest loop makes them."""
    if entries:
        store.insert_arrow(CHAIN, pa.Table.from_pylist(list(entries), schema=arrow_schema(CHAIN)))


def write_checkpoint(store: Store, checkpoint: Checkpoint) -> None:
    store.insert_arrow(CHECKPOINTS, arrow_rows(CHECKPOINTS, [StoredCheckpoint.of(checkpoint)], []))


def load_heads(store: Store) -> dict[str, Head]:
    rows = store.query_rows(
        "SELECT chain, max(seq) AS last_seq, argMax(`offset`, seq) AS last_offset, "
        f"argMax(head, seq) AS last_head FROM {store.database}.{CHAIN.name} FINAL GROUP BY chain",
        {},
    )
    return {
        row["chain"]: Head(row["last_seq"], row["last_offset"], row["last_head"]) for row in rows
    }


def read_entries(store: Store) -> Iterator[ChainEntry]:
    """Every chain entry, by chain then number."""
    after: tuple[str, int] = ("", 0)
    while True:
        rows = store.query_rows(
            f"SELECT {_columns(CHAIN)} FROM {store.database}.{CHAIN.name} FINAL "
            "WHERE (chain, seq) > ({chain:String}, {seq:Int64}) "
            f"ORDER BY chain, seq LIMIT {ENTRY_PAGE}",
            {"chain": after[0], "seq": after[1]},
        )
        yield from (ChainEntry(**row) for row in rows)
        if len(rows) < ENTRY_PAGE:
            return
        after = (rows[-1]["chain"], rows[-1]["seq"])


def last_entry(store: Store, chain: str) -> ChainEntry | None:
    rows = store.query_rows(
        f"SELECT {_columns(CHAIN)} FROM {store.database}.{CHAIN.name} FINAL "
        "WHERE chain = {chain:String} ORDER BY seq DESC LIMIT 1",
        {"chain": chain},
    )
    return ChainEntry(**rows[0]) if rows else None


def read_checkpoints(store: Store, key: str) -> list[StoredCheckpoint]:
    rows = store.query_rows(
        f"SELECT {_columns(CHECKPOINTS)} FROM {store.database}.{CHECKPOINTS.name} FINAL "
        "WHERE key_id = {key:String} ORDER BY number",
        {"key": key},
    )
    return [StoredCheckpoint(**row) for row in rows]


def read_rows(store: Store, table: Table, org: str | None) -> list[dict[str, Any]]:
    """The rows of a chained table as queries see them (FINAL), bytes columns as bytes."""
    where = "org = {org:String}" if org is not None else "1"
    formats: dict[str, str | dict[str, str]] = dict.fromkeys(table.bytes_columns, "bytes")
    final = " FINAL" if table.replacing else ""
    return store.query_rows(
        f"SELECT {_columns(table)} FROM {store.database}.{table.name}{final} WHERE {where}",
        {"org": org} if org is not None else {},
        formats,
    )


def _columns(table: Table) -> str:
    return ", ".join(f"`{name}`" for name in table.column_names)
