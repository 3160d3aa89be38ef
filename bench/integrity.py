"""What the tamper evidence costs the store's ingest: rows/s with the chain on against off.

Two `Ingestor`s (sinks/ingest.py) in one process, each on its own database of one on-disk
chDB, read the same scripted messages as bench/store.py (AuditBatch messages of 500 records,
one message per violation, some retractions) from a stand-in consumer. One chains every row
and signs checkpoints into the store (every 10,000 rows, the default); the other does not. They
take turns in rounds, so load on the machine falls on both alike. Left out: the broker, and
publishing checkpoints to Kafka (once per checkpoint, not per row).

    .venv/bin/python bench/integrity.py --rows 200000 --rounds 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from store_history import Events, ScriptedConsumer

from config.settings import Settings
from sinks.clickhouse.store import Store
from sinks.ingest import Ingestor
from sinks.integrity.ledger import Ledger
from sinks.integrity.signing import Checkpoint


class Unpublished:
    """Checkpoints kept in the store only: the bench has no broker."""

    def __call__(self, checkpoint: Checkpoint) -> None:
        pass

    def close(self) -> None:
        pass


class Side:
    def __init__(self, directory: Path, name: str, chained: bool) -> None:
        settings = Settings(data_dir=directory)
        self.store = Store.open(f"chdb://{directory / 'chdb'}?database={name}")
        self.consumer = ScriptedConsumer(Events(subjects=50_000))
        ledger = Ledger(settings, self.store, Unpublished()) if chained else None
        self.ingestor = Ingestor(
            settings, self.store, consumer_factory=lambda: self.consumer, ledger=ledger
        )
        self.ingestor.start()

    def fill(self, target: int) -> float:
        """Rows/s of ingesting events up to `target` (message making excluded)."""
        written = self._events()
        generating = self.consumer.generating
        started = time.perf_counter()
        with self.consumer.lock:
            self.consumer.allowed = target
        while self._events() < target:
            problem = self.ingestor.status().last_error
            if problem:
                raise SystemExit(f"ingest failed: {problem}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started - (self.consumer.generating - generating)
        return (target - written) / elapsed

    def _events(self) -> int:
        return self.ingestor.status().rows_written["events"]

    def close(self) -> None:
        self.ingestor.stop()
        self.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="events per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="privtrail-bench-integrity-"))
    plain = Side(directory, "plain", chained=False)
    chained = Side(directory, "chained", chained=True)
    ratios = []
    try:
        for round_number in range(1, args.rounds + 1):
            target = round_number * args.rows
            # Alternate who goes first, so neither always meets a warmer or colder machine.
            sides = (plain, chained) if round_number % 2 else (chained, plain)
            rates = {id(side): side.fill(target) for side in sides}
            off, on = rates[id(plain)], rates[id(chained)]
            ratios.append(on / off)
            print(
                f"round {round_number}: chain off {off:,.0f} rows/s, on {on:,.0f} rows/s, "
                f"ratio {on / off:.2f}"
            )
        print(f"median ratio (chain on / off): {statistics.median(ratios):.2f}")
    finally:
        plain.close()
        chained.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
