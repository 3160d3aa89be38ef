"""The state table's entries: each carries its subject's next deadline, so a restarted worker
indexes deadlines without parsing histories, and entries of the earlier format still recover."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest

from config.settings import REPO_POLICIES
from privtrail.demo import default_start, demo_events
from streams.entries import (
    ChangelogFormatError,
    changelog_value,
    index_deadlines,
    parse_entry,
    read_header,
)
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge
from streams.rules.policy import load_policy_set

POLICY = load_policy_set(REPO_POLICIES)
PARTITIONS = 4


def judged() -> tuple[Judge, dict[str, tuple[int, SubjectHistory]]]:
    """The demo's subjects after a few thousand events, spread over the partitions."""
    judge = Judge(POLICY, b"entries-test")
    events = demo_events(7, 3000, default_start(), malformed_share=0)
    # A subject's events all come from one partition, as the message key places them.
    batch = [
        Incoming(
            "privacy.events",
            zlib.crc32(event.key or b"") % PARTITIONS,
            offset,
            event.key,
            event.value,
        )
        for offset, event in enumerate(events)
    ]
    table: dict[str, tuple[int, SubjectHistory]] = {}
    for start in range(0, len(batch), 500):
        verdicts = judge.judge_batch(
            batch[start : start + 500], lambda k: table.get(k, (0, None))[1]
        )
        table.update(verdicts.histories)
    return judge, table


@pytest.fixture(scope="module")
def subjects() -> tuple[Judge, dict[str, tuple[int, SubjectHistory]]]:
    return judged()


def entries_as_written(
    judge: Judge, table: dict[str, tuple[int, SubjectHistory]]
) -> dict[str, bytes]:
    return {
        key: changelog_value(partition, history, judge.policy.version, judge.next_due(key))
        for key, (partition, history) in table.items()
    }


def computed_deadlines(table: dict[str, tuple[int, SubjectHistory]]) -> dict[str, datetime]:
    """Each subject's next deadline computed from its parsed state: what a restart must know."""
    due = {key: POLICY.next_deadline(history.state) for key, (_, history) in table.items()}
    return {key: deadline for key, deadline in due.items() if deadline is not None}


def restarted(entries: dict[str, bytes], partitions: set[int]) -> Judge:
    judge = Judge(POLICY, b"entries-test")
    index_deadlines(judge, entries.items(), partitions)
    return judge


def test_an_entry_reads_back_as_written(
    subjects: tuple[Judge, dict[str, tuple[int, SubjectHistory]]],
) -> None:
    judge, table = subjects
    key, (partition, history) = next(
        (k, v) for k, v in table.items() if judge.next_due(k) is not None
    )
    raw = changelog_value(partition, history, judge.policy.version, judge.next_due(key))
    header = read_header(key, raw)
    assert (header.partition, header.policy) == (partition, POLICY.version)
    assert header.next_due == judge.next_due(key)
    entry = parse_entry(raw)
    assert entry.partition == partition
    assert entry.history.changelog_json() == history.changelog_json()


def test_a_restart_indexes_from_the_headers_the_deadlines_the_histories_give(
    subjects: tuple[Judge, dict[str, tuple[int, SubjectHistory]]],
) -> None:
    judge, table = subjects
    expected = computed_deadlines(table)
    assert len(expected) > 10, "the demo's subjects have deadlines pending"
    again = restarted(entries_as_written(judge, table), set(range(PARTITIONS)))
    assert {key: again.next_due(key) for key in expected} == expected
    assert all(again.next_due(key) is None for key in table.keys() - expected.keys())


def test_a_restart_reports_the_same_missed_deadlines_as_the_judge_before_it() -> None:
    judge, table = judged()  # its own: judging deadlines changes the judge
    histories = {key: history for key, (_, history) in table.items()}
    later = max(d for d in computed_deadlines(table).values()) + timedelta(days=1)

    def missed(j: Judge) -> list[tuple[str, str]]:
        copies = {k: h.model_copy(deep=True) for k, h in histories.items()}
        due = j.judge_due(later, copies.get).violations
        return sorted((v.subject_pseudonym, v.rule_id) for v in due)

    by_header = missed(restarted(entries_as_written(judge, table), set(range(PARTITIONS))))
    assert by_header and by_header == missed(judge)


def test_only_the_partitions_asked_for_are_indexed(
    subjects: tuple[Judge, dict[str, tuple[int, SubjectHistory]]],
) -> None:
    judge, table = subjects
    expected = computed_deadlines(table)
    again = restarted(entries_as_written(judge, table), {1})
    indexed = {key for key in expected if again.next_due(key) is not None}
    assert indexed == {key for key in expected if table[key][0] == 1}


def test_entries_of_the_earlier_format_are_recovered_from_their_histories(
    subjects: tuple[Judge, dict[str, tuple[int, SubjectHistory]]],
) -> None:
    # As a worker before the header wrote them: no policy, no next deadline, every field.
    _, table = subjects
    earlier = {
        key: b'{"partition":%d,"history":%s}' % (partition, history.model_dump_json().encode())
        for key, (partition, history) in table.items()
    }
    expected = computed_deadlines(table)
    again = restarted(earlier, set(range(PARTITIONS)))
    assert {key: again.next_due(key) for key in expected} == expected
    key = next(iter(expected))
    assert read_header(key, earlier[key]).policy is None
    assert parse_entry(earlier[key]).history.changelog_json() == table[key][1].changelog_json()


def test_entries_judged_under_another_policy_get_their_deadline_computed_again(
    subjects: tuple[Judge, dict[str, tuple[int, SubjectHistory]]],
) -> None:
    # The deadline written under another policy version says nothing about this one.
    _, table = subjects
    expected = computed_deadlines(table)
    stale = datetime(2000, 1, 1, tzinfo=UTC)
    entries = {
        key: changelog_value(partition, history, "another-one", stale)
        for key, (partition, history) in table.items()
    }
    again = restarted(entries, set(range(PARTITIONS)))
    assert {key: again.next_due(key) for key in expected} == expected


def test_an_entry_in_no_known_format_stops_the_recovery_naming_the_subject() -> None:
    judge = Judge(POLICY, b"entries-test")
    with pytest.raises(ChangelogFormatError, match="subject s-7 is in no known format"):
        index_deadlines(judge, [("s-7", b'{"history":{}}')], {0})
    bad_date = b'{"partition":0,"policy":"v","next_due":"soon","history":{}}'
    with pytest.raises(ChangelogFormatError, match="subject s-8 has a next_due that is no date"):
        index_deadlines(judge, [("s-8", bad_date)], {0})
