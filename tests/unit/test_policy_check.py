"""The policy checker names each kind of problem and points at the line it is on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from streams.rules import PolicyError, PolicyProblem, check_policies, load_policy_set

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"

HEADER = """\
org: acme
name: Acme
subject_kinds: [customer]
lists:
  vetted: [vendor-a]
rules:
"""


def _write(directory: Path, text: str, name: str = "acme.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _line(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    matches = [i + 1 for i, line in enumerate(lines) if needle in line]
    assert len(matches) == 1, f"{needle!r} should be on exactly one line"
    return matches[0]


def _only(problems: list[PolicyProblem]) -> PolicyProblem:
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def _rule(when: str, rule_id: str = "AC-ONE-001") -> str:
    return HEADER + textwrap.indent(
        f"- id: {rule_id}\n  severity: high\n  section: '1'\n  text: Quoted.\n  when:\n"
        + textwrap.indent(textwrap.dedent(when), "    "),
        "  ",
    )


def test_the_shipped_policies_have_no_problems() -> None:
    assert check_policies(REPO_POLICIES) == []


def test_yaml_syntax_error_points_at_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "  - id: [unclosed\n  - id: X\n")
    problem = _only(check_policies(path))
    assert problem.file == str(path)
    assert problem.line == 8
    assert "YAML syntax error" in problem.message


def test_unknown_keys_are_reported_where_they_are_written(tmp_path: Path) -> None:
    text = _rule("all:\n  - event: [privacy.data.shared]\n  - use_undr: [marketing]\n")
    path = _write(tmp_path, text.replace("name: Acme", "name: Acme\ncolour: blue"))
    problems = check_policies(path)
    assert {(p.line, p.message.split(" (")[0]) for p in problems} == {
        (_line(path, "colour"), "unknown key 'colour'"),
        (_line(path, "use_undr"), "unknown key 'use_undr'"),
    }


def test_wrong_value_type_names_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, _rule("event: [privacy.data.shared]\n").replace("'1'", "1"))
    problem = _only(check_policies(path))
    assert problem.line == _line(path, "section:")
    assert "rules.0.section" in problem.message and "string" in problem.message


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER.replace("name: Acme", "name: Acme\nname: Other") + "  []\n")
    problem = _only(check_policies(path.parent))
    assert problem.line == _line(path, "name: Other")
    assert "appears twice" in problem.message


def test_duplicate_rule_ids_in_one_file(tmp_path: Path) -> None:
    rule = "  - id: AC-ONE-001\n    severity: low\n    section: '1'\n    text: T.\n"
    rule += "    when: {event: [privacy.data.shared]}\n"
    path = _write(tmp_path, HEADER + rule + rule.replace("severity: low", "severity: high"))
    problem = _only(check_policies(path))
    second_rule = [
        i + 1 for i, line in enumerate(path.read_text().splitlines()) if "AC-ONE" in line
    ]
    assert problem.line == second_rule[1]
    assert problem.message == "duplicate rule id 'AC-ONE-001' (also rule #1)"


def test_duplicate_rule_ids_and_orgs_across_files(tmp_path: Path) -> None:
    _write(tmp_path, _rule("event: [privacy.data.shared]\n"), "a.yaml")
    other = _write(
        tmp_path,
        _rule("event: [privacy.data.shared]\n").replace("org: acme", "org: beta"),
        "b.yaml",
    )
    twin = _write(tmp_path, _rule("event: [privacy.data.accessed]\n", "AC-TWO-002"), "c.yaml")
    problems = check_policies(tmp_path)
    assert (
        PolicyProblem(
            str(other),
            _line(other, "AC-ONE-001"),
            f"duplicate rule id 'AC-ONE-001' (also in {tmp_path / 'a.yaml'})",
        )
        in problems
    )
    assert (
        PolicyProblem(str(twin), 1, f"org 'acme' already has a policy in {tmp_path / 'a.yaml'}")
        in problems
    )
    assert len(problems) == 2


def test_unknown_taxonomy_key_in_a_condition(tmp_path: Path) -> None:
    path = _write(
        tmp_path, _rule("all:\n  - event: [privacy.data.shared]\n  - use_under: [marketing.spam]\n")
    )
    problem = _only(check_policies(path))
    assert problem.line == _line(path, "marketing.spam")
    assert problem.message == "unknown data use 'marketing.spam'"


def test_unknown_taxonomy_key_in_a_list_used_as_categories(tmp_path: Path) -> None:
    text = _rule("categories_any_under: {list: vetted}\n")
    path = _write(
        tmp_path,
        text.replace("vetted: [vendor-a]", "vetted:\n    - user.contact\n    - user.shoe_size"),
    )
    problem = _only(check_policies(path))
    assert problem.line == _line(path, "user.shoe_size")
    assert "unknown data category 'user.shoe_size'" in problem.message
    assert "AC-ONE-001" in problem.message


def test_extension_with_unknown_parent(tmp_path: Path) -> None:
    extension = (
        "taxonomy:\n  data_categories:\n    user.pets.name: user.pets\n    user.hobby: user\n"
    )
    path = _write(tmp_path, HEADER.replace("lists:", extension + "lists:") + "  []\n")
    problem = _only(check_policies(path))
    assert problem.line == _line(path, "user.pets.name")
    assert problem.message == "extension 'user.pets.name': parent 'user.pets' is not a known key"


def test_extension_must_be_a_direct_child(tmp_path: Path) -> None:
    extension = "taxonomy:\n  data_uses:\n    marketing.a.b: marketing\n"
    path = _write(tmp_path, HEADER.replace("lists:", extension + "lists:") + "  []\n")
    problem = _only(check_policies(path))
    assert problem.line == _line(path, "marketing.a.b")
    assert "direct child" in problem.message


def test_reference_to_an_undefined_list(tmp_path: Path) -> None:
    when = "all:\n  - event: [privacy.data.shared]\n  - recipient_not_in: {list: approved}\n"
    path = _write(tmp_path, _rule(when))
    problem = _only(check_policies(path))
    assert problem.line == _line(path, "approved")
    assert problem.message == "rule AC-ONE-001: undefined list 'approved'"


def test_never_fires_when_the_event_type_lacks_the_field(tmp_path: Path) -> None:
    when = "all:\n  - event: [privacy.data.accessed]\n  - recipient_kind: [employer]\n"
    path = _write(tmp_path, _rule(when))
    problem = _only(check_policies(path))
    assert problem.line == _line(path, "recipient_kind")
    assert problem.message == (
        "rule AC-ONE-001 can never fire: privacy.data.accessed has no `recipient`, "
        "which `recipient_kind` tests"
    )


def test_never_fires_when_a_use_must_be_under_x_and_not_under_x(tmp_path: Path) -> None:
    when = (
        "all:\n  - event: [privacy.data.accessed]\n  - use_under: [marketing.advertising]\n"
        "  - use_not_under: [marketing]\n"
    )
    path = _write(tmp_path, _rule(when))
    problem = _only(check_policies(path))
    assert problem.line == _line(path, "use_under")
    assert (
        "can never fire: the use must be under marketing.advertising and not under marketing"
        in (problem.message)
    )


def test_never_fires_with_an_empty_any(tmp_path: Path) -> None:
    path = _write(tmp_path, _rule("all:\n  - event: [privacy.data.accessed]\n  - any: []\n"))
    problems = check_policies(path)
    assert {p.line for p in problems} == {_line(path, "any: []")}
    assert {p.message for p in problems} == {
        "rule AC-ONE-001: an empty `any` never fires",
        "rule AC-ONE-001 can never fire: no alternative of `any` can hold",
    }


def _rules(text: str) -> str:
    return HEADER + textwrap.indent(textwrap.dedent(text), "  ")


def test_deadline_problems(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _rules(
            """\
            - id: AC-DL-001
              severity: high
              section: '7'
              text: Within 30 days.
              deadline: {after: erasure_request_opened, within: 30 days, unless: [legal_hold]}
            - id: AC-DL-002
              severity: high
              section: '7'
              text: Gone.
              when: {deadline_passed: true}
            """
        ),
    )
    problems = sorted((p.line, p.message) for p in check_policies(path))
    assert problems == [
        (
            _line(path, "legal_hold"),
            "a deadline after erasure_request_opened must list request_fulfilled in `unless`: "
            "a fulfilled request is what stops its clock",
        ),
        (
            _line(path, "deadline_passed"),
            "rule AC-DL-002: deadline_passed needs the rule to have a `deadline`",
        ),
    ]


def test_bad_duration(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _rules(
            """\
            - id: AC-DL-003
              severity: high
              section: '7'
              text: Soon.
              deadline: {after: closed_at, within: 3 fortnights}
            """
        ),
    )
    problem = _only(check_policies(path))
    assert problem.line == _line(path, "fortnights")
    assert "'3 fortnights' is not a duration like '30 days'" in problem.message


def test_bad_country_code(tmp_path: Path) -> None:
    when = "all:\n  - event: [privacy.data.shared]\n  - recipient_country_not_in: [MA, XX]\n"
    path = _write(tmp_path, _rule(when))
    problem = _only(check_policies(path))
    assert problem.line == _line(path, "XX")
    assert problem.message == "'XX' is not an ISO 3166-1 alpha-2 country code"


def test_empty_directory(tmp_path: Path) -> None:
    assert check_policies(tmp_path) == [PolicyProblem(str(tmp_path), 1, "no *.yaml policy files")]


def test_loader_refuses_a_policy_with_problems(tmp_path: Path) -> None:
    path = _write(
        tmp_path, _rule("all:\n  - event: [privacy.data.shared]\n  - use_under: [nope]\n")
    )
    with pytest.raises(PolicyError) as caught:
        load_policy_set(tmp_path)
    assert f"{path}:{_line(path, 'nope')}: unknown data use 'nope'" in str(caught.value)
