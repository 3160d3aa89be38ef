"""A table's changelog applied a fetch at a time, and the worker's table entries kept as bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.entries import ParsedEntries, changelog_value
from streams.history import SubjectHistory
from streams.recovery import apply_changelog
from streams.state import SubjectState
from streams.transport import WorkerTransport

CHANGELOG = "recovery-test-subject-state-changelog"
ACTIVE = TP(CHANGELOG, 0)
STANDBY = TP(CHANGELOG, 1)


def recovering_app() -> tuple[Any, Any]:
    """An app whose recovery reads partition 0 of the changelog as an active, 1 as a standby,
    with offsets up to 9 on the active to read."""
    app = faust.App("recovery-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    app.transport = WorkerTransport(app.conf.broker_consumer, app)
    table = app.Table(
        "subject-state",
        partitions=2,
        value_type=bytes,
        schema=faust.Schema(key_serializer="json", value_serializer="raw"),
    )
    recovery = cast(Any, app.tables).recovery
    recovery.tp_to_table = {ACTIVE: table, STANDBY: table}
    recovery.active_tps = {ACTIVE}
    recovery.standby_tps = {STANDBY}
    recovery.active_highwaters[ACTIVE] = 9
    recovery.active_offsets[ACTIVE] = -1
    recovery._set_recovery_started()
    return app, table


def entry(offset: int, key: str, value: bytes | None, tp: TP = ACTIVE) -> ConsumerMessage:
    return ConsumerMessage(
        tp.topic, tp.partition, offset, 0.0, 0, [], b'"%s"' % key.encode(), value, None
    )


def test_a_fetch_is_applied_in_offset_order_with_its_tombstones() -> None:
    app, table = recovering_app()
    apply_changelog(
        app,
        [
            entry(0, "a", b"1"),
            entry(1, "b", b"1"),
            entry(2, "a", b"2"),
            entry(3, "b", None),
            entry(0, "c", b"standby", tp=STANDBY),
        ],
    )
    assert table.data.data == {"a": b"2", "c": b"standby"}, "the newest value of each key"
    recovery = cast(Any, app.tables).recovery
    assert recovery.active_offsets[ACTIVE] == 3
    assert recovery.standby_offsets[STANDBY] == 0
    assert recovery.in_recovery, "offsets 4..9 are still to read"


def test_a_json_valued_table_gets_its_values_decoded() -> None:
    # Every table but the subject state keeps Faust's JSON values: its readers get dicts.
    app, _ = recovering_app()
    keys = app.Table(
        "json-valued",
        partitions=2,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
    )
    cast(Any, app.tables).recovery.tp_to_table[ACTIVE] = keys
    apply_changelog(app, [entry(0, "lookup", b'{"secret":"ab","erased_at":null}')])
    assert keys.data.data == {"lookup": {"secret": "ab", "erased_at": None}}


def test_offsets_already_applied_are_not_applied_again() -> None:
    app, table = recovering_app()
    apply_changelog(app, [entry(4, "a", b"new")])
    apply_changelog(app, [entry(3, "a", b"old"), entry(4, "a", b"old")])
    assert table.data.data == {"a": b"new"}, "a fetch read again after a seek changes nothing"


def test_recovery_ends_once_the_highwater_is_applied() -> None:
    app, _ = recovering_app()
    recovery = cast(Any, app.tables).recovery
    apply_changelog(app, [entry(9, "a", b"1")])
    assert not recovery.in_recovery
    assert recovery.signal_recovery_end.is_set(), "Faust's recovery loop goes on"


def test_the_consumer_applies_changelog_fetches_and_yields_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, table = recovering_app()
    other = ConsumerMessage("other", 0, 7, 0.0, 0, [], b"k", b"v", None)
    fetched = [entry(0, "a", b"1"), other, entry(1, "b", b"2")]

    async def faust_getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        for message in fetched:
            yield message.tp, message

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", faust_getmany)

    async def scenario() -> list[int]:
        return [m.offset async for _, m in app.consumer.getmany(timeout=1.0)]

    assert asyncio.run(scenario()) == [7], "only what no recovery reads goes through Faust"
    assert table.data.data == {"a": b"1", "b": b"2"}


def history(org: str) -> SubjectHistory:
    return SubjectHistory.of_state(SubjectState(org=org, subject_kind="customer"))


def test_an_entry_is_parsed_again_once_the_table_holds_other_bytes() -> None:
    parsed = ParsedEntries(size=10)
    first = changelog_value(3, history("connectx"), "v1", None)
    assert parsed.get("s", first).history.state.org == "connectx"
    assert parsed.get("s", first) is parsed.get("s", first), "kept parsed"
    recovered = changelog_value(3, history("linkxup"), "v1", None)  # what a recovery wrote since
    again = parsed.get("s", recovered)
    assert (again.partition, again.history.state.org) == (3, "linkxup")


def test_only_the_entries_used_last_stay_parsed() -> None:
    parsed = ParsedEntries(size=2)
    values = {key: changelog_value(0, history(key), "v1", None) for key in ("a", "b", "c")}
    kept = {key: parsed.get(key, value) for key, value in values.items()}
    assert parsed.get("c", values["c"]) is kept["c"]
    assert parsed.get("a", values["a"]) is not kept["a"], "the oldest was dropped"
