"""A subject's entry in the worker's state table, as its changelog carries it.

    {"partition":P,"policy":"V","next_due":"2026-01-31T00:00:00+00:00","history":{...}}

`partition` is the source partition the subject's events come from, `policy` the version of the
policy set the entry was judged with, `next_due` the subject's earliest pending deadline under
it (null: none), `history` the subject's history (streams/history.py). The first three come
first, in this order, so a restarted worker indexes every subject's next deadline from a few
bytes of each entry (`read_header`) instead of parsing a million histories to compute them. An
entry judged under another policy version, and one written before the header existed
(`{"partition":P,"history":...}`, or `{"partition":P,"state":...}` before windows: no policy
in its header), has its deadline computed from its parsed history instead.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import orjson

from streams.history import SubjectHistory
from streams.judging import Judge
from streams.state import SubjectState

_HEADER = re.compile(
    rb'\{"partition":(\d+),"policy":"([^"\\]*)","next_due":(?:null|"([^"\\]+)"),"history":'
)
# Entries written before the header: recovered by parsing them.
_UNHEADED = re.compile(rb'\{"partition":(\d+),"(?:history|state)":')


class ChangelogFormatError(ValueError):
    """A table entry in no format this worker can read: recovering past it would lose state."""


@dataclass(frozen=True, slots=True)
class Header:
    partition: int
    # None: written before entries carried their next deadline.
    policy: str | None
    next_due: datetime | None


@dataclass
class Entry:
    """A subject's state in the table, as this worker holds it in memory."""

    partition: int
    history: SubjectHistory


def changelog_value(
    partition: int, history: SubjectHistory, policy: str, next_due: datetime | None
) -> bytes:
    """A subject's entry as the changelog carries it (the module's docstring)."""
    due = b"null" if next_due is None else b'"%s"' % next_due.isoformat().encode()
    return b'{"partition":%d,"policy":"%s","next_due":%s,"history":%s}' % (
        partition,
        policy.encode(),
        due,
        history.changelog_json(),
    )


def read_header(key: str, raw: bytes) -> Header:
    """The entry's partition, policy version and next deadline, read without parsing its
    history."""
    match = _HEADER.match(raw)
    if match is None:
        unheaded = _UNHEADED.match(raw)
        if unheaded is not None:
            return Header(int(unheaded.group(1)), None, None)
        raise ChangelogFormatError(
            f"the state table entry of subject {key} is in no known format (it starts with "
            f"{raw[:60]!r}): it was not written by a privtrail worker"
        )
    partition, policy, due = match.groups()
    try:
        next_due = None if due is None else datetime.fromisoformat(due.decode())
    except ValueError as error:
        raise ChangelogFormatError(
            f"the state table entry of subject {key} has a next_due that is no date: {due!r}"
        ) from error
    return Header(int(partition), policy.decode(), next_due)


def index_deadlines(
    judge: Judge, entries: Iterable[tuple[str, bytes]], partitions: set[int]
) -> None:
    """Index the next deadline of each entry of `partitions`: read off its header, or, for an
    entry written before entries carried it or judged under another policy, computed from its
    history (parsed once and not kept: a restart may meet a million of them)."""
    version = judge.policy.version
    for key, raw in entries:
        header = read_header(key, raw)
        if header.partition not in partitions:
            continue
        if header.policy == version:
            judge.index_deadline(key, header.partition, header.next_due)
        else:
            judge.track(key, header.partition, parse_entry(raw).history)


def parse_entry(raw: bytes) -> Entry:
    """The entry with its history parsed, whichever format wrote it."""
    fields = orjson.loads(raw)
    if "history" in fields:
        history = SubjectHistory.model_validate(fields["history"])
    else:
        # Written before subjects kept a window: the state alone, nothing to re-judge.
        history = SubjectHistory.of_state(SubjectState.model_validate(fields["state"]))
    return Entry(fields["partition"], history)


class ParsedEntries:
    """The table entries parsed lately, each with the changelog bytes it was parsed from: an
    entry whose bytes the table no longer holds (recovered or replaced since) is parsed again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[bytes, Entry]] = OrderedDict()

    def get(self, key: str, raw: bytes) -> Entry:
        kept = self._entries.get(key)
        if kept is not None and kept[0] is raw:
            self._entries.move_to_end(key)
            return kept[1]
        entry = parse_entry(raw)
        self.keep(key, raw, entry)
        return entry

    def keep(self, key: str, raw: bytes, entry: Entry) -> None:
        entries = self._entries
        entries[key] = (raw, entry)
        entries.move_to_end(key)
        if len(entries) > self.size:
            entries.popitem(last=False)
