"""The worker's state table as its changelog holds it: what `_persist` writes, and reading it back.

One table, `subject-state`, on one changelog topic, so that all the records of a subject keep
their order on its partition. Keys carry subject pseudonyms only:

- `<pseudonym>`: the subject's value, rewritten whenever a batch touches the subject: its
  partition, its next deadline and the policy version that computed it (so indexing deadlines
  after a restart decodes no state), the base and current state, the seqs of its kept events
  in window order, the violations reported for the window.
- `<pseudonym>#<seq>`: one kept event, written once when kept (again only when judging it
  again changes the rules it broke) and deleted by a tombstone once trimming folds it into the
  base, so log compaction frees it. Its value is a JSON header line (id, time, type, source
  partition and offset, rules broken) and the event as it arrived, subject id replaced.

A subject's records go out in this order: new kept events, then the value that refers to them,
then tombstones of those it no longer refers to. A crash anywhere thus leaves every event a
value refers to in the log before it. An entry a crash left unreferenced is never read: one
written before its value was lost has a seq the subject gives out again, which overwrites it;
one whose tombstone was lost stays in the table until the subject's key is dropped.

Two older value layouts still load: `{"partition", "history"}` with the kept events inline,
and `{"partition", "state"}` from before windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from events.outputs import Violation
from streams.history import Kept, SubjectHistory
from streams.state import SubjectState

# Pseudonyms are hex digests: this never occurs in a subject's own key.
_SEQ_MARK = "#"

# Ends a value's header (partition, due, policy), which encode_subject writes first.
_SUBJECT_FIELD = b',"subject":'

# (key, value) to send in this order; a None value is a tombstone.
Record = tuple[str, bytes | None]


@dataclass(frozen=True)
class Located:
    """What indexing a subject's deadline needs, read without decoding its state."""

    partition: int
    due: datetime | None
    policy_version: str | None


def kept_key(pseudonym: str, seq: int) -> str:
    return f"{pseudonym}{_SEQ_MARK}{seq}"


def is_kept_key(key: str) -> bool:
    return _SEQ_MARK in key


def subject_records(
    key: str, partition: int, history: SubjectHistory, due: datetime | None, policy_version: str
) -> list[Record]:
    """The changelog records for a subject a batch touched, in the order they must be sent."""
    unsaved, dropped = history.take_changes()
    records: list[Record] = [(kept_key(key, kept.seq), encode_kept(kept)) for kept in unsaved]
    records.append((key, encode_subject(partition, history, due, policy_version)))
    records.extend((kept_key(key, seq), None) for seq in dropped)
    return records


def encode_kept(kept: Kept) -> bytes:
    header = {
        "id": kept.id,
        "time": kept.time,
        "type": kept.type,
        "partition": kept.partition,
        "offset": kept.offset,
        "violated": kept.violated,
    }
    # orjson never writes a raw newline, so the first one ends the header.
    return orjson.dumps(header) + b"\n" + kept.event


def decode_kept(seq: int, value: bytes) -> Kept:
    header, _, event = value.partition(b"\n")
    fields = orjson.loads(header)
    return Kept(
        id=fields["id"],
        time=datetime.fromisoformat(fields["time"]),
        type=fields["type"],
        partition=fields["partition"],
        offset=fields["offset"],
        event=event,
        violated=fields["violated"],
        seq=seq,
    )


def encode_subject(
    partition: int, history: SubjectHistory, due: datetime | None, policy_version: str
) -> bytes:
    reported = b",".join(
        orjson.dumps(vid) + b":" + violation.model_dump_json().encode()
        for vid, violation in history.reported.items()
    )
    meta = orjson.dumps(
        {
            "since": history.since,
            "fired_until": history.fired_until,
            "window": [kept.seq for kept in history.window],
            "next_seq": history.next_seq,
        }
    )
    return (
        b'{"partition":%d,"due":%s,"policy":%s,"subject":{"base":%s,"state":%s,%s,"reported":{%s}}}'
        % (
            partition,
            orjson.dumps(due),
            orjson.dumps(policy_version),
            history.base.model_dump_json().encode(),
            history.state.model_dump_json().encode(),
            meta[1:-1],
            reported,
        )
    )


def locate(value: bytes | dict[str, Any]) -> Located:
    if isinstance(value, bytes):
        # The header comes first: parsing the states too would cost ten times as much.
        header, found, _ = value.partition(_SUBJECT_FIELD)
        fields = orjson.loads(header + b"}" if found else value)
    else:
        fields = value
    due = fields.get("due")
    return Located(
        fields["partition"], datetime.fromisoformat(due) if due else None, fields.get("policy")
    )


def decode_subject(
    key: str, value: bytes | dict[str, Any], take_kept: Callable[[str], bytes | None]
) -> tuple[int, SubjectHistory]:
    """A subject's partition and history from its value; `take_kept` hands over (and may drop
    from the table) the kept entries the value refers to."""
    fields = orjson.loads(value) if isinstance(value, bytes) else value
    if "subject" in fields:
        return fields["partition"], _history(key, fields["subject"], take_kept)
    if "history" in fields:
        return fields["partition"], _inline_history(fields["history"])
    # Written before subjects kept a window: the state alone, nothing to re-judge.
    return fields["partition"], SubjectHistory.of_state(
        SubjectState.model_validate(fields["state"])
    )


def _history(
    key: str, fields: dict[str, Any], take_kept: Callable[[str], bytes | None]
) -> SubjectHistory:
    window = []
    for seq in fields["window"]:
        entry = take_kept(kept_key(key, seq))
        if entry is None:
            raise LookupError(f"subject {key}: kept event #{seq} is missing from the changelog")
        window.append(decode_kept(seq, entry))
    return SubjectHistory(
        base=SubjectState.model_validate(fields["base"]),
        state=SubjectState.model_validate(fields["state"]),
        since=_instant(fields["since"]),
        window=window,
        reported=_reported(fields["reported"]),
        fired_until=_instant(fields["fired_until"]),
        next_seq=fields["next_seq"],
    )


def _inline_history(fields: dict[str, Any]) -> SubjectHistory:
    # Its kept events get seqs now, and are written under their own keys at the next write.
    window = [
        Kept(
            id=kept["id"],
            time=datetime.fromisoformat(kept["time"]),
            type=kept["type"],
            partition=kept["partition"],
            offset=kept["offset"],
            event=kept["event"].encode(),
            violated=kept["violated"],
        )
        for kept in fields.get("window", [])
    ]
    return SubjectHistory(
        base=SubjectState.model_validate(fields["base"]),
        state=SubjectState.model_validate(fields["state"]),
        since=_instant(fields.get("since")),
        window=window,
        reported=_reported(fields.get("reported", {})),
        fired_until=_instant(fields.get("fired_until")),
    )


def _reported(fields: dict[str, Any]) -> dict[str, Violation]:
    return {vid: Violation.model_validate(violation) for vid, violation in fields.items()}


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
