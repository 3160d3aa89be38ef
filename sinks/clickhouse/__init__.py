"""The ClickHouse store: schema, batched writes and queries (chDB embedded or a server)."""

from sinks.clickhouse.answers import StoreStats
from sinks.clickhouse.dsn import StoreError
from sinks.clickhouse.schema import ensure_schema
from sinks.clickhouse.store import Store

__all__ = ["Store", "StoreError", "StoreStats", "ensure_schema"]
