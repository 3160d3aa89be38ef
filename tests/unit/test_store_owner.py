"""A store opened after its last owner died without closing it recounts its counters.

ClickHouse writes a block to a table and to its views as separate parts: a process killed
inside an insert can leave counts without their rows, or rows without their counts. Each case
runs in processes of its own, as the store's owners do: chDB opens one data directory per
process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sinks.clickhouse.owner import OWNER_FILE, OwnerMark

# Writes three events and three violations, then skews each counter as a lost or extra view
# part would, and leaves as a killed process does: without closing the store.
_DIE_HOLDING_IT = """
import os, sys
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import audit, violation
store = Store.open(sys.argv[1])
store.write_audit([audit(f"e{n}", subject_pseudonym=f"p{n}") for n in range(3)])
store.write_violations([violation(f"v{n}") for n in range(3)])
db = store.database
store.command(f"INSERT INTO {db}.row_counts VALUES ('events', 5), ('violations', -2)")
store.command(f"INSERT INTO {db}.org_row_counts VALUES ('linkxup', 'events', 5)")
store.command(f"INSERT INTO {db}.rule_counts SELECT org, rule_id, 'high', 4 FROM {db}.violations")
os._exit(0)
"""

# Opens the store, prints what its counters say, and closes it.
_OPEN_AND_TELL = """
import json, sys
from sinks.clickhouse.store import Store
store = Store.open(sys.argv[1])
stats = store.stats()
json.dump({
    "tables": stats["tables"],
    "by_rule": sum(row["count"] for row in stats["violations_by_rule"]),
    "org_events": store.query_rows(
        f"SELECT sum(rows) AS n FROM {store.database}.org_row_counts "
        "WHERE table_name = 'events'", {})[0]["n"],
}, sys.stdout)
store.close()
"""


def _run(script: str, directory: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, f"chdb://{directory}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_store_whose_owner_died_is_recounted_from_its_rows(tmp_path: Path) -> None:
    _run(_DIE_HOLDING_IT, tmp_path)
    assert (tmp_path / OWNER_FILE).exists(), "a killed owner leaves its mark"

    told = json.loads(_run(_OPEN_AND_TELL, tmp_path))

    assert told["tables"]["events"] == 3
    assert told["tables"]["violations"] == 3
    assert told["tables"]["lineage_edges"] == 6
    assert told["by_rule"] == 3
    assert told["org_events"] == 3
    assert not (tmp_path / OWNER_FILE).exists(), "a clean close removes the mark"


def test_a_store_closed_cleanly_opens_without_a_recount(tmp_path: Path) -> None:
    _run(_OPEN_AND_TELL, tmp_path)
    assert not (tmp_path / OWNER_FILE).exists()
    # The counters as the last owner left them: a recount would have undone this skew.
    skew = _DIE_HOLDING_IT.replace("os._exit(0)", "store.close()")
    _run(skew, tmp_path)

    told = json.loads(_run(_OPEN_AND_TELL, tmp_path))

    assert told["tables"]["events"] == 3 + 5


def test_a_dead_owner_with_this_process_pid_is_still_another_process(tmp_path: Path) -> None:
    # A container restarted after its store was killed: the new process has the dead one's pid.
    mark = OwnerMark(tmp_path / OWNER_FILE)
    (tmp_path / OWNER_FILE).write_text(f"{os.getpid()} 0123456789abcdef\n")
    assert mark.previous_owner_died()

    mark.claim()
    assert not mark.previous_owner_died()
    mark.release()
    assert not (tmp_path / OWNER_FILE).exists()


def test_only_the_last_store_of_a_process_to_close_removes_the_mark(tmp_path: Path) -> None:
    first, second = OwnerMark(tmp_path / OWNER_FILE), OwnerMark(tmp_path / OWNER_FILE)
    first.claim()
    second.claim()
    first.release()
    assert (tmp_path / OWNER_FILE).exists()
    second.release()
    assert not (tmp_path / OWNER_FILE).exists()
