"""Whether the last process to open an on-disk chDB store died without closing it.

ClickHouse writes an inserted block to its table and to each of the table's views as parts of
their own, not atomically. chDB runs inside the store's process, so a store killed inside an
insert can leave rows without the counts their views add, or counts without their rows; the
replay that follows cannot tell either from a first copy (counters.py). A store opened after
such a death recounts its counters from its rows.

The data directory holds a file naming the process that has the store open, and a clean close
removes it. chDB lets one process at a time open a data directory, so a file naming another
process, found once the store is open, is that of a process that died holding it. A ClickHouse
server finishes an insert it has received whatever becomes of its client: a server's store has
no such file.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

OWNER_FILE = "privtrail-owner"

# With the pid in the file: a pid alone repeats, e.g. in a container restarted after its store
# was killed, where the new process has the dead one's pid.
_TOKEN = secrets.token_hex(8)

# Stores of this process open on each file: the last to close removes it.
_open_here: Counter[Path] = Counter()
_open_here_lock = threading.Lock()


@dataclass(frozen=True)
class OwnerMark:
    # None: not an on-disk chDB store.
    path: Path | None

    @classmethod
    def of(cls, server_dsn: str) -> OwnerMark:
        parts = urlsplit(server_dsn)
        if parts.scheme != "chdb" or parts.netloc or not parts.path:
            return cls(None)
        return cls(Path(parts.path) / OWNER_FILE)

    def previous_owner_died(self) -> bool:
        """Whether another process had the store open and never closed it."""
        if self.path is None:
            return False
        try:
            owner = self.path.read_text().strip()
        except FileNotFoundError:
            return False
        # This process: another of its Stores has it open (tests, benches), or had.
        return owner != _this_process()

    def claim(self) -> None:
        if self.path is None:
            return
        with _open_here_lock:
            written = self.path.with_suffix(".tmp")
            written.write_text(f"{_this_process()}\n")
            written.replace(self.path)
            _open_here[self.path] += 1

    def release(self) -> None:
        """Remove the file once every Store of this process that claimed it has closed."""
        if self.path is None:
            return
        with _open_here_lock:
            _open_here[self.path] -= 1
            if _open_here[self.path] <= 0:
                del _open_here[self.path]
                self.path.unlink(missing_ok=True)


def _this_process() -> str:
    return f"{os.getpid()} {_TOKEN}"
