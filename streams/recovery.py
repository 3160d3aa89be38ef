"""Table changelogs applied a whole fetch at a time while Faust recovers or keeps standbys.

Faust hands a recovering table one changelog message at a time: its fetch loop races each
delivery against flow control, the conductor decodes it into an event and queues it, and the
recovery loop takes it off the queue, records its offset and buffers it. With a million
subjects in the table that is most of a restart (bench/README.md, `recovery.py`). Here the
worker's consumer applies each fetch's changelog messages straight to the table's store, in
offset order, and records the offsets where Faust's recovery reads them: its own checks (what
is left to read, when recovery ends, what a revoke drops) then run unchanged.

Only messages Faust would apply are: those of a changelog partition it is recovering or keeps
as a standby, past the last offset it recorded there.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, cast

from faust.types import TP, AppT, Message


def is_changelog(app: AppT, tp: TP) -> bool:
    """Whether Faust's recovery reads `tp` now (an active being recovered, or a standby)."""
    recovery: Any = cast(Any, app.tables).recovery
    return tp in recovery.active_tps or tp in recovery.standby_tps


def apply_changelog(app: AppT, messages: list[Message]) -> None:
    """Apply one fetch's changelog messages to their tables, as Faust's recovery would."""
    recovery: Any = cast(Any, app.tables).recovery
    by_tp: dict[TP, list[Message]] = defaultdict(list)
    for message in messages:
        by_tp[message.tp].append(message)
    for tp, fetched in by_tp.items():
        active = tp in recovery.active_tps
        offsets = recovery.active_offsets if active else recovery.standby_offsets
        seen = offsets.get(tp)
        fresh = [m for m in fetched if seen is None or m.offset > seen]
        if not fresh:
            continue
        _store(app, recovery.tp_to_table[tp], fresh)
        offsets[tp] = fresh[-1].offset
    if recovery.in_recovery and not recovery.need_recovery():
        # What Faust's recovery loop does once nothing is left to read.
        recovery.flush_buffers()
        recovery._set_recovery_ended()
        recovery.signal_recovery_end.set()


def _store(app: AppT, table: Any, messages: list[Message]) -> None:
    """Each message's value under its key, or the key deleted for a tombstone, in order,
    decoded by the table's own schema, as Faust's conductor would (the state table keeps raw
    bytes; a table of JSON values gets them decoded)."""
    store = table.data
    data, partitions = store.data, store._key_partition
    schema = table.schema
    to_key, to_value = table._to_key, table._to_value
    for message in messages:
        key = to_key(schema.loads_key(app, message))
        if message.value is None:
            data.pop(key, None)
            partitions.pop(key, None)
        else:
            data[key] = to_value(schema.loads_value(app, message))
            partitions[key] = message.partition
