"""Event ids: random (version 4) UUIDs, drawn from the operating system many at a time.

`uuid.uuid4()` reads 16 bytes with one `os.urandom` call per id, and that call lets go of the
GIL: the producer's I/O thread takes it, and on a busy machine the caller then waits for it far
longer than the call itself takes (bench/README.md, the emitter's profile). One call per
`IDS_PER_DRAW` ids; the bytes are the same kernel randomness.
"""

from __future__ import annotations

import os
import threading

IDS_PER_DRAW = 1024
_ID_BYTES = 16
# RFC 9562: the version (4) in the top nibble of byte 6, the variant (0b10) in the top bits of
# byte 8, the other 122 bits random.
_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_4 = (0x4000 << 64) | (0x8000 << 48)


class RandomIds:
    """A source of version 4 UUID strings, safe to share between threads and across `fork`."""

    def __init__(self, per_draw: int = IDS_PER_DRAW) -> None:
        self._draw_bytes = per_draw * _ID_BYTES
        self._lock = threading.Lock()
        self._pool = b""
        self._taken = 0
        # A forked child must not hand out the ids left in its parent's pool.
        os.register_at_fork(after_in_child=self._forget)

    def __call__(self) -> str:
        with self._lock:
            if self._taken == len(self._pool):
                self._pool = os.urandom(self._draw_bytes)
                self._taken = 0
            drawn = self._pool[self._taken : self._taken + _ID_BYTES]
            self._taken += _ID_BYTES
        bits = int.from_bytes(drawn) & _VERSION_MASK | _VERSION_4
        text = f"{bits:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def _forget(self) -> None:
        # A new lock too: another thread may have held the parent's at the fork.
        self._lock = threading.Lock()
        self._pool = b""
        self._taken = 0


new_event_id = RandomIds()
