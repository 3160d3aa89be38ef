"""Per-stage cost of the judge, in microseconds per event, from a py-spy profile of bench/judge.py.

    .venv/bin/py-spy record -r 250 -f raw -o /tmp/judge.txt -- \\
        .venv/bin/python bench/judge.py --events 50000 --rounds 1
    .venv/bin/python bench/stages.py /tmp/judge.txt --events 50000 --rate 250

A stage is the samples under any of its functions, within bench/judge.py's judging loop
(`_judge`); each sample stands for 1/rate seconds. Stages can nest (judging is inside folding
on top), so they are not meant to add up; "judging loop" is the whole.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

LOOP = "_judge judge.py"
# Stage -> functions, as "qualified name, file name" (py-spy: "name (path/file.py:line)").
STAGES: dict[str, tuple[str, ...]] = {
    "parse + validate (parse_event)": ("parse_event validation.py",),
    "Kept.of": ("Kept.of history.py",),
    "judge (rules, deadlines)": (
        "YamlPolicySet.judge policy.py",
        "report_missed replay.py",
        "YamlPolicySet.next_deadline policy.py",
    ),
    "fold (SubjectState.apply)": ("SubjectState.apply state.py",),
    "trim (into the base)": ("SubjectHistory.trim history.py",),
    "re-judge (late events)": ("Judge._rejudge judging.py",),
    "output records (audit_record, violations)": (
        "audit_record verdicts.py",
        "event_violation verdicts.py",
        "deadline_violation verdicts.py",
    ),
    "output encoding (fit_record, audit_messages)": ("_encode_outputs judge.py",),
    "changelog encoding (subject_records)": ("subject_records changelog.py",),
    "judging loop": (LOOP,),
}


def stage_samples(profile: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in profile.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = [_name(frame) for frame in stack.split(";")]
        if LOOP not in frames:
            continue
        below = set(frames[frames.index(LOOP) :])
        for stage, functions in STAGES.items():
            if below.intersection(functions):
                counts[stage] += int(samples)
    return counts


def _name(frame: str) -> str:
    function, _, location = frame.partition(" (")
    return f"{function} {location.split(':')[0].rsplit('/', 1)[-1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    parser.add_argument("--events", type=int, required=True, help="events judged in the run")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args()
    counts = stage_samples(args.profile)
    print("| stage | us per event |\n| --- | --- |")
    for stage in STAGES:
        print(f"| {stage} | {counts[stage] / args.rate / args.events * 1e6:,.1f} |")


if __name__ == "__main__":
    main()
