"""The ClickHouse store: schema, batched writes and queries (chDB embedded or a server)."""

from sinks.clickhouse.schema import ensure_schema
from sinks.clickhouse.store import Store, StoreError, StoreStats

__all__ = ["Store", "StoreError", "StoreStats", "ensure_schema"]
