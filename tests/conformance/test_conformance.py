"""Conformance suite: for every rule ID of policy-clauses.md, cases that must and must not fire.

Each `<RULE-ID>.yaml` lists cases: compact events for one or more subjects, an optional policy
override (merged into the org's policy file), an optional final `now`, and the exact violations
expected, in order. Events are judged in-process with `judge_history`, the same fold as the
worker's.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.rules import judge_history, load_policy_set
from streams.rules.policy import YamlPolicySet
from tests.conformance.cases import POLICIES, Case, case_files, org_of
from tests.conformance.compact import as_time, build_events
from tests.contract import clause_rule_ids

CASE_FILES = case_files()
CASES = [(rule, case) for rule, file in CASE_FILES.items() for case in file.cases]


@pytest.fixture(scope="module")
def policy() -> YamlPolicySet:
    return load_policy_set(POLICIES)


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: _merge(base[k], v) if k in base else v for k, v in override.items()} | {
            k: v for k, v in base.items() if k not in override
        }
    return override


def _overridden(org: str, override: dict[str, Any], directory: Path) -> YamlPolicySet:
    for path in POLICIES.glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if data["org"] == org:
            merged = _merge(data, override)
            text = yaml.safe_dump(merged, allow_unicode=True, sort_keys=False)
            (directory / path.name).write_text(text, encoding="utf-8")
        else:
            shutil.copy(path, directory / path.name)
    return load_policy_set(directory)


@pytest.mark.parametrize(
    ("rule_id", "case"), CASES, ids=[f"{rule}: {case.name}" for rule, case in CASES]
)
def test_case(rule_id: str, case: Case, policy: YamlPolicySet, tmp_path: Path) -> None:
    org = org_of(policy, rule_id)
    judged = policy if case.policy is None else _overridden(org, case.policy, tmp_path)
    kind = judged.policies[org].subject_kinds[0]
    events = build_events(case.events, org, kind, judged.taxonomies, rule_id)
    now: datetime | None = None if case.now is None else as_time(case.now, f"{case.name}: now")
    found = judge_history(judged, events, now)
    got = [f.finding.rule.rule_id for f in found]
    detail = "\n".join(f"  {f.finding.rule.rule_id}: {f.finding.explanation}" for f in found)
    assert got == case.expect, f"expected {case.expect}, got {got}:\n{detail}"


def test_every_clause_has_a_firing_case_and_a_near_miss() -> None:
    missing = []
    for rule_id in clause_rule_ids():
        cases = CASE_FILES[rule_id].cases if rule_id in CASE_FILES else []
        if not any(rule_id in case.expect for case in cases):
            missing.append(f"{rule_id}: no case where it fires")
        if not any(rule_id not in case.expect for case in cases):
            missing.append(f"{rule_id}: no near miss where it must not fire")
    assert not missing, "\n".join(missing)


def test_policies_enforce_exactly_the_clauses(policy: YamlPolicySet) -> None:
    clauses = clause_rule_ids()
    in_policies = [info.rule_id for info in policy.rules]
    assert sorted(set(in_policies) - set(clauses)) == [], "rules not in policy-clauses.md"
    assert sorted(set(clauses) - set(in_policies)) == [], "clauses without a rule"


def test_case_files_are_about_known_rules() -> None:
    assert sorted(set(CASE_FILES) - set(clause_rule_ids())) == []
