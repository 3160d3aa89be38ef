"""noida-db's Kafka service, from its PyPI wheel: the broker that needs no Java."""

from __future__ import annotations

from importlib.metadata import version
from importlib.resources import files
from pathlib import Path
from typing import ClassVar

from privtrail.brokers.base import EmbeddedBroker, executable


class NoidaBroker(EmbeddedBroker):
    """noida-db's Kafka service: durable storage, idempotent producers and transactions work.

    Its data is saved to the data dir about once a second and on SIGTERM, so a SIGKILL loses
    the last second of writes. Known defects, with no client setting that avoids them: an
    OffsetCommit that races a rebalance is answered ILLEGAL_GENERATION (Kafka accepts it or
    answers REBALANCE_IN_PROGRESS); aiokafka then drops its member id and rejoins as a new
    member, and the group keeps waiting for the abandoned one, so it may not settle while the
    member keeps committing. And a Fetch on an empty log is answered at once instead of after
    max_wait_ms, so idle consumers spin (about 1,000 requests/s each), costing CPU on both sides.
    """

    name = "noida"
    persistent = True
    supports_transactions = True
    client_tuning: ClassVar[dict[str, int | float]] = {}

    @classmethod
    def default_binary(cls) -> Path:
        # The `noida-db` console script is a Python wrapper that runs this binary as its child;
        # signalling the wrapper leaves the server running, so run the binary itself.
        return executable(Path(str(files("noida_db").joinpath("noida-db"))))

    @classmethod
    def release(cls) -> str:
        return f"noida-db {version('noida-db')}"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "noida"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "start",
            "--only",
            "kafka",
            "--host",
            self.host,
            "--kafka-port",
            str(self.port),
            "--data-dir",
            str(self.store_dir),
        ]
