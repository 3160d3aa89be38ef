"""Opening a store: its two connections, its schema and counters, and its owner's mark."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.counters import ensure_counters
from sinks.clickhouse.dsn import StoreError, redact, split_database
from sinks.clickhouse.owner import OwnerMark
from sinks.clickhouse.schema import ensure_schema
from sinks.clickhouse.tls import tls_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Connections:
    writer: Client
    reader: Client
    database: str
    # Released when the store closes (owner.py).
    owner: OwnerMark


def connect(dsn: str, verify: bool, ca_cert: Path | None) -> Connections:
    """Connect twice to `dsn`, create what the schema lacks, and recount the counters if the
    store's last owner died holding it."""
    server_dsn, database = split_database(dsn)
    opened: list[Client] = []
    try:
        tls = tls_options(server_dsn, verify, ca_cert)
        for _ in ("writer", "reader"):
            opened.append(clickhouse_connect.get_client(dsn=server_dsn, tz_mode="aware", **tls))
    except Exception as error:
        _close_all(opened)
        raise StoreError(f"cannot open the store at {redact(dsn)}: {error}") from error
    writer, reader = opened
    owner = OwnerMark.of(server_dsn)
    died = owner.previous_owner_died()
    if died:
        log.warning(
            "the store at %s was not closed by the process that last had it open: "
            "recounting its counters from its rows",
            redact(dsn),
        )
    try:
        ensure_schema(writer, database)
        ensure_counters(writer, database, recount=died)
    except Exception as error:
        _close_all(opened)
        raise StoreError(f"cannot create the schema in {redact(dsn)}: {error}") from error
    try:
        # Only now: a recount cut short leaves the dead owner's file, and the next open
        # recounts.
        owner.claim()
    except OSError as error:
        _close_all(opened)
        raise StoreError(f"cannot mark the store at {redact(dsn)} as open: {error}") from error
    return Connections(writer, reader, database, owner)


def _close_all(clients: Iterable[Client]) -> None:
    for client in clients:
        client.close()
