"""Whether two trees' judges give the same verdicts, byte for byte, in every arrival order.

Demo events (some malformed) are judged in order, shuffled within windows, with the first ones
held back past the lateness horizon, and with duplicates, each at several batch sizes, by the
judge of this tree and of `--baseline` (a git revision, extracted as bench/judge.py does). Every
violation, audit record, dead letter and changelog value is written out with its wall-clock
fields (`detected_at`, `judged_at`) left out, and the two trees' outputs are compared.

    .venv/bin/python bench/judge_verdicts.py --baseline a4042e5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import re
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from judge import extract_tree

SEED = 11
PSEUDONYM_KEY = b"verdicts"
# A fixed end, so both trees read the same event times; far enough in the past that the judge's
# wall-clock bound on event time never applies.
END = datetime(2026, 1, 1, tzinfo=UTC)
PARTITIONS = 3
REPO = Path(__file__).resolve().parent.parent
_DETECTED_AT = re.compile(rb'"detected_at":"[^"]*",?')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="a4042e5", help="git revision to compare with")
    parser.add_argument("--events", type=int, default=12_000)
    parser.add_argument("--malformed", type=float, default=0.03)
    parser.add_argument("--batch-sizes", default="200,1000,4999")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _judge_all(args.child, args.out, [int(s) for s in args.batch_sizes.split(",")])
        return
    with tempfile.TemporaryDirectory(prefix="privtrail-verdicts-") as tmp:
        root = Path(tmp)
        orders = root / "orders.pickle"
        counts = _write_orders(orders, args.events, args.malformed)
        print("orders:", ", ".join(f"{name} {n} messages" for name, n in counts.items()))
        trees = {args.baseline: extract_tree(args.baseline, root / "baseline"), "now": REPO}
        outputs = {}
        for name, tree in trees.items():
            outputs[name] = root / f"{name}.jsonl"
            _run_child(tree, orders, outputs[name], args.batch_sizes)
        same = _compare(outputs[args.baseline], outputs["now"])
    sys.exit(0 if same else 1)


def _write_orders(path: Path, count: int, malformed: float) -> dict[str, int]:
    from privtrail.demo import demo_events
    from privtrail.demo.planner import DEMO_SPAN

    events = [
        (e.key, e.value)
        for e in demo_events(SEED, count, END - DEMO_SPAN, malformed_share=malformed)
    ]
    rng = random.Random(SEED)
    shuffled = []
    for first in range(0, len(events), 300):
        window = events[first : first + 300]
        rng.shuffle(window)
        shuffled += window
    duplicated = []
    for i, message in enumerate(events):
        duplicated.append(message)
        if i % 7 == 0:
            duplicated.append(events[max(0, i - 50)])  # a retry, some messages later
    orders = {
        "in order": events,
        "shuffled within 300": shuffled,
        "first 300 held back": events[300:] + events[:300],
        "every 7th again": duplicated,
    }
    with path.open("wb") as out:
        pickle.dump(orders, out)
    return {name: len(messages) for name, messages in orders.items()}


def _run_child(tree: Path, orders: Path, out: Path, batch_sizes: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, __file__, "--child", str(orders), "--out", str(out)]
    command += ["--batch-sizes", batch_sizes]
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"judging with the judge of {tree} failed:\n{done.stderr}")


def _judge_all(orders_path: Path, out_path: Path, batch_sizes: list[int]) -> None:
    with orders_path.open("rb") as source:
        orders: dict[str, list[tuple[bytes | None, bytes]]] = pickle.load(source)
    with out_path.open("w") as out:
        for name, messages in orders.items():
            for size in batch_sizes:
                for line in _judge(messages, size):
                    out.write(f"{name}\t{size}\t{line}\n")


def _judge(messages: list[tuple[bytes | None, bytes]], batch_size: int) -> Iterator[str]:
    from config.settings import REPO_POLICIES
    from streams.judging import Incoming, Judge
    from streams.rules.policy import load_policy_set

    judge = Judge(load_policy_set(REPO_POLICIES), PSEUDONYM_KEY)
    table: dict[str, Any] = {}
    incoming = [
        Incoming("privacy.events", zlib.crc32(key or b"") % PARTITIONS, offset, key, value)
        for offset, (key, value) in enumerate(messages)
    ]
    for first in range(0, len(incoming), batch_size):
        verdicts = judge.judge_batch(incoming[first : first + batch_size], table.get)
        yield from _lines(verdicts, table)
    yield from _lines(judge.judge_due(END + timedelta(days=400), table.get), table)


def _lines(verdicts: Any, table: dict[str, Any]) -> Iterator[str]:
    for violation in verdicts.violations:
        yield "violation " + _json(violation.model_dump(mode="json", exclude={"detected_at"}))
    for record in verdicts.audit:
        yield "audit " + _json(record.model_dump(mode="json", exclude={"judged_at"}))
    for letter in verdicts.dead_letters:
        incoming, error = letter.incoming, letter.error
        digest = hashlib.sha256(incoming.value).hexdigest()
        where = f"{incoming.partition} {incoming.offset}"
        yield f"dead {where} {error.field!r} {error.reason!r} {digest}"
    for key, (partition, history) in verdicts.histories.items():
        table[key] = history
        # As the worker writes it (trees before `changelog_json` dumped the model), byte for
        # byte but the reported violations' wall-clock `detected_at`.
        encode = getattr(history, "changelog_json", None)
        value = encode() if encode is not None else history.model_dump_json().encode()
        yield f"changelog {key} {partition} " + _DETECTED_AT.sub(b"", value).decode()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _compare(theirs: Path, mine: Path) -> bool:
    with theirs.open() as a, mine.open() as b:
        for number, (line_a, line_b) in enumerate(zip(a, b, strict=False), 1):
            if line_a != line_b:
                print(f"first difference at line {number}:\n- {line_a[:2000]}+ {line_b[:2000]}")
                return False
    sizes = (theirs.stat().st_size, mine.stat().st_size)
    if sizes[0] != sizes[1]:
        print(f"outputs differ in length: {sizes[0]} against {sizes[1]} bytes")
        return False
    kinds: dict[str, int] = {}
    with mine.open() as lines:
        for line in lines:
            kind = line.split("\t", 2)[2].split(" ", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
    print("identical:", ", ".join(f"{n:,} {kind} lines" for kind, n in sorted(kinds.items())))
    return True


if __name__ == "__main__":
    main()
