"""What a Store query reads, from ClickHouse's `EXPLAIN indexes = 1` of the SQL it sends, and
the parts and merges of the store it reads them from.

bench/store.py prints it beside the query times: parts and granules each index leaves, so a
time can be read against the data the query touched (a filter that prunes nothing shows as
`Parts: n/n` on its index).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sinks.clickhouse.store import Store

_INDEXES = ("Min-Max", "Partition", "PrimaryKey", "Skip")


def sent_query(store: Store, call: Callable[[], object]) -> tuple[str, dict[str, Any]]:
    """The last query `call` sent on the store's reading connection, and its arguments."""
    reader = store._reader
    sent: list[tuple[str, dict[str, Any]]] = []
    original = reader.query

    def recording(query: str, **arguments: Any) -> Any:
        sent.append((query, arguments))
        return original(query, **arguments)

    reader.query = recording  # type: ignore[method-assign,assignment]
    try:
        call()
    finally:
        del reader.query
    return sent[-1]


def read_summary(store: Store, call: Callable[[], object]) -> str:
    """`Min-Max 2/12 parts, ..., PrimaryKey 2/2 parts 3/900 granules` for the query of `call`."""
    sql, arguments = sent_query(store, call)
    arguments.pop("column_formats", None)
    plan = store._reader.query(f"EXPLAIN indexes = 1 {sql}", **arguments)
    lines = [str(row[0]).strip(" │├└─") for row in plan.result_rows]
    summary, index = [], None
    for line in lines:
        if line in _INDEXES:
            index = line
        elif index and line.startswith("Parts:"):
            summary.append(f"{index} {line.removeprefix('Parts: ')} parts")
        elif index and line.startswith("Granules:"):
            summary[-1] += f" {line.removeprefix('Granules: ')} granules"
            index = None
    return ", ".join(summary) or "(no index used)"


def store_activity(store: Store) -> str:
    """`lineage_edges: 13 parts (13 Compact), 2 merges running in the store`: how many parts a
    subject's look-up may read, and whether merges compete with it."""
    parts = store.query_rows(
        "SELECT part_type, count() AS n FROM system.parts WHERE database = {db:String} "
        "AND table = 'lineage_edges' AND active GROUP BY part_type ORDER BY part_type",
        {"db": store.database},
    )
    merges = store.query_rows(
        "SELECT count() AS n FROM system.merges WHERE database = {db:String}",
        {"db": store.database},
    )
    kinds = ", ".join(f"{row['n']} {row['part_type']}" for row in parts)
    total = sum(row["n"] for row in parts)
    return f"lineage_edges: {total} parts ({kinds}), {merges[0]['n']} merges running in the store"
