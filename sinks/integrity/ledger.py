"""The store writer's side: chain what is stored, and sign and publish checkpoints.

The ingest loop calls `observe` for each consumed message, `write` before it stores a batch's
rows (the entries go first, so a row is never stored without its entry), and `tick` once per
loop turn, which signs a checkpoint once `integrity_checkpoint_records` entries or
`integrity_checkpoint_seconds` have passed since the last one.

The serve process's API threads call `append` for each access-log row, beside the ingest loop:
a lock serialises every call, so an access entry is numbered, stored and then its row written
as one step, and a checkpoint signs heads no other thread is moving.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import pyarrow as pa
from pydantic import BaseModel

from config.settings import Settings
from sinks.access import AccessEntry
from sinks.clickhouse.access import access_row_stored, append_access
from sinks.clickhouse.store import Store
from sinks.integrity.chain import ACCESS_CHAIN, LOCAL_CHAINS, Chains
from sinks.integrity.signing import Checkpoint, SignedHead, Signer, load_signer
from sinks.integrity.tables import (
    ensure_integrity_schema,
    last_entry,
    load_heads,
    read_checkpoints,
    write_checkpoint,
    write_entries,
)

log = logging.getLogger(__name__)

Row = TypeVar("Row", bound=BaseModel)


class Publisher(Protocol):
    def __call__(self, checkpoint: Checkpoint) -> None: ...
    def close(self) -> None: ...


class Ledger:
    def __init__(self, settings: Settings, store: Store, publish: Publisher | None = None) -> None:
        self.settings = settings
        self.store = store
        self.signer: Signer = load_signer(settings.integrity_key_path, settings.data_dir)
        self._publish = publish or KafkaPublisher(settings)
        self._chains: Chains | None = None
        self._pending: list[dict[str, Any]] = []
        self._last: Checkpoint | None = None
        self._unsigned = 0
        self._last_signed = time.monotonic()
        self._unpublished: list[Checkpoint] = []
        # An access-log row chained and not (yet) stored: its store write failed.
        self._row_missing = False
        self._lock = threading.RLock()
        # The local chains' rows since the last checkpoint, by offset: what names the rows of
        # an unsigned tail cut from the store (`rows`), as Kafka's copy does for the topics.
        self._recent: dict[str, dict[int, BaseModel]] = {}

    def observe(
        self, topic: str, partition: int, offset: int, rows: Sequence[BaseModel] | pa.Table
    ) -> None:
        with self._lock:
            self._pending.extend(self._loaded().extend(topic, partition, offset, rows))

    def write(self) -> None:
        """Store the pending entries; raises (entries kept) if the store fails."""
        with self._lock:
            write_entries(self.store, self._pending)
            self._unsigned += len(self._pending)
            self._pending = []

    def append(self, chain: str, row: Row, store_row: Callable[[Row], None]) -> None:
        """Chain one row of a local chain and store it with `store_row`, the entry first (as
        `write` does), so a row is never stored without its entry."""
        with self._lock:
            chains = self._loaded()
            if self._row_missing:
                self._write_missing_row()
            entry = chains.append(chain, row)
            write_entries(self.store, [entry])
            self._unsigned += 1
            self._recent.setdefault(chain, {})[entry["offset"]] = row
            self._row_missing = True
            store_row(row)
            self._row_missing = False

    def committed(self) -> dict[str, int]:
        """Per local chain: the offset after the last row appended (its entry and row stored)."""
        with self._lock:
            heads = self._loaded().heads
            return {name: heads[name].offset + 1 for name in LOCAL_CHAINS if name in heads}

    def rows(self, chain: str, start: int, end: int) -> list[tuple[int, list[BaseModel]]]:
        """The rows of a local chain at offsets [start, end) appended since the last checkpoint."""
        with self._lock:
            recent = self._recent.get(chain, {})
            return [(offset, [recent[offset]]) for offset in range(start, end) if offset in recent]

    def checkpoints(self, key_id: str) -> list[Checkpoint]:
        return []  # published to Kafka, read from there

    def tick(self) -> None:
        """Sign a checkpoint if one is due, and publish those Kafka has not taken yet."""
        with self._lock:
            if self._checkpoint_due():
                self._sign()
        # Outside the lock, so a broker that is down never holds up the API's requests: only
        # the ingest loop signs and publishes.
        self._publish_waiting()

    def close(self) -> None:
        """Sign what is stored and unsigned, publish what waits, close the producer."""
        with self._lock:
            if not self._pending and self._unsigned:
                self._sign()
        self._publish_waiting()
        self._publish.close()

    def checkpoint(self) -> Checkpoint:
        """Sign the heads of every chain as stored now, and keep the checkpoint in the store."""
        with self._lock:
            return self._sign()

    def _sign(self) -> Checkpoint:
        chains = self._loaded()
        last = self._last
        unsigned = Checkpoint(
            number=(last.number + 1) if last else 1,
            created_at=datetime.now(UTC),
            key_id=self.signer.key_id,
            previous=last.body_hash() if last else "",
            heads={
                name: SignedHead(seq=head.seq, offset=head.offset, head=head.head)
                for name, head in sorted(chains.heads.items())
                if head.seq > 0
            },
        )
        signed = self.signer.sign(unsigned)
        write_checkpoint(self.store, signed)
        self._last = signed
        self._unsigned = 0
        self._recent = {}
        self._last_signed = time.monotonic()
        self._unpublished.append(signed)
        return signed

    def _checkpoint_due(self) -> bool:
        if self._pending or not self._unsigned:
            return False  # only what is stored is signed
        if self._unsigned >= self.settings.integrity_checkpoint_records:
            return True
        waited = time.monotonic() - self._last_signed
        return waited >= self.settings.integrity_checkpoint_seconds

    def _loaded(self) -> Chains:
        if self._chains is None:
            ensure_integrity_schema(self.store)
            self._chains = Chains(load_heads(self.store))
            stored = read_checkpoints(self.store, self.signer.key_id)
            self._last = stored[-1].checkpoint() if stored else None
            signed = self._last.heads if self._last else {}
            # Entries stored after the last checkpoint (before a restart) still need signing.
            self._unsigned = sum(
                head.seq - (signed[name].seq if name in signed else 0)
                for name, head in self._chains.heads.items()
            )
            self._row_missing = True  # until checked: a failed check is retried by `append`
            self._write_missing_row()
        return self._chains

    def _write_missing_row(self) -> None:
        """Write the access-log row of the chain's last entry if the store lacks it: the
        process that chained it stopped (or its store write failed) between the two writes.
        The entry's copy is the row its digest commits to, so verify finds it as chained."""
        entry = last_entry(self.store, ACCESS_CHAIN)
        record = entry.record if entry is not None else None
        if entry and record and not access_row_stored(self.store, entry.row_id):
            append_access(self.store, AccessEntry.model_validate_json(record))
            log.warning(
                "wrote access-log row %s from its chain entry %s#%d: it was chained and not "
                "stored before",
                entry.row_id,
                ACCESS_CHAIN,
                entry.seq,
            )
        self._row_missing = False

    def _publish_waiting(self) -> None:
        while self._unpublished:
            try:
                self._publish(self._unpublished[0])
            except Exception as error:
                log.warning("publishing integrity checkpoint failed, will retry: %s", error)
                return
            self._unpublished.pop(0)


class KafkaPublisher:
    """Sends checkpoints to the compacted checkpoint topic, keyed by the signing key's id: the
    topic keeps each key's newest signed heads (the store keeps every checkpoint)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: object | None = None

    def __call__(self, checkpoint: Checkpoint) -> None:
        from kafka import KafkaProducer

        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.settings.bootstrap,
                client_id=f"{self.settings.app_id}-integrity",
                acks="all",
                **self.settings.kafka_security.kafka_python(),
            )
        producer: KafkaProducer = self._producer
        value = json.dumps(checkpoint.model_dump(mode="json")).encode()
        producer.send(
            self.settings.topics.checkpoints, key=checkpoint.key_id.encode(), value=value
        ).get(timeout=10)

    def close(self) -> None:
        if self._producer is not None:
            from kafka import KafkaProducer

            producer: KafkaProducer = self._producer
            producer.close(timeout=5)
