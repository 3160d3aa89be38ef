"""Policy checker: every problem of a policy directory, each pointing at file:line.

`load_policy_set` refuses a policy with problems, so what the checker accepts is what the worker
runs. Beyond syntax and unknown keys it catches what would otherwise fail silently at run time:
an unknown taxonomy key or list name, and conditions that can never fire.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pycountry
from pydantic import ValidationError

from events.models import EventType
from events.taxonomy import Taxonomy
from streams.rules.compile import ALL_TYPES, FIELD_OF_TEST, TYPES_OF_TEST, ancestors
from streams.rules.schema import Condition, Operand, PolicyFile, Rule
from streams.rules.source import YamlDocument, YamlPath, YamlSyntaxError, compose_yaml

POLICY_SUFFIXES = (".yaml", ".yml")
_CATEGORY_TESTS = frozenset(
    {"categories_any_under", "categories_all_under", "public_categories_cover"}
)
_USE_TESTS = frozenset({"use_under", "use_not_under"})


@dataclass(frozen=True)
class PolicyProblem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True)
class ParsedPolicy:
    path: Path
    raw: bytes
    policy: PolicyFile
    taxonomy: Taxonomy
    doc: YamlDocument


class PolicyError(ValueError):
    """A policy directory that cannot be loaded; lists every problem found."""

    def __init__(self, problems: list[PolicyProblem]) -> None:
        self.problems = problems
        super().__init__("invalid policy:\n" + "\n".join(f"  {p}" for p in problems))


def check_policies(path: Path) -> list[PolicyProblem]:
    """All problems of a policy file, or of every policy file in a directory."""
    return read_policies(path)[1]


def policy_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in POLICY_SUFFIXES and p.is_file())
    return [path] if path.is_file() else []


def read_policies(path: Path) -> tuple[list[ParsedPolicy], list[PolicyProblem]]:
    files = policy_files(path)
    if not files:
        what = "no such file or directory" if not path.exists() else "no *.yaml policy files"
        return [], [PolicyProblem(str(path), 1, what)]
    parsed: list[ParsedPolicy] = []
    problems: list[PolicyProblem] = []
    for file in files:
        result, found = _read_one(file)
        problems.extend(found)
        if result is not None:
            parsed.append(result)
    problems.extend(_across_files(parsed))
    return parsed, problems


def _read_one(path: Path) -> tuple[ParsedPolicy | None, list[PolicyProblem]]:
    raw = path.read_bytes()
    name = str(path)
    try:
        doc = compose_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, [PolicyProblem(name, 1, f"not UTF-8 text ({exc.reason})")]
    except YamlSyntaxError as exc:
        return None, [PolicyProblem(name, exc.line, exc.message)]
    problems = [PolicyProblem(name, line, message) for line, message in doc.duplicate_keys]
    try:
        policy = PolicyFile.model_validate(doc.data)
    except ValidationError as exc:
        return None, problems + _validation_problems(name, doc, exc)
    checker = _FileChecker(name, doc, policy)
    taxonomy = checker.run()
    problems.extend(checker.problems)
    return ParsedPolicy(path, raw, policy, taxonomy, doc), problems


def _validation_problems(name: str, doc: YamlDocument, exc: ValidationError) -> list[PolicyProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        where = ".".join(str(part) for part in loc) or "file"
        if error["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r} (at {where})"
        else:
            message = f"{where}: {error['msg']}"
        problems.append(PolicyProblem(name, doc.line_of(loc), message))
    return problems


def _across_files(parsed: list[ParsedPolicy]) -> Iterator[PolicyProblem]:
    orgs: dict[str, Path] = {}
    rule_ids: dict[str, Path] = {}
    for item in parsed:
        doc = item.doc
        org = item.policy.org
        if org in orgs:
            yield PolicyProblem(
                str(item.path),
                doc.line_of(("org",)),
                f"org {org!r} already has a policy in {orgs[org]}",
            )
        orgs.setdefault(org, item.path)
        for i, rule in enumerate(item.policy.rules):
            first = rule_ids.setdefault(rule.id, item.path)
            if first != item.path:
                line = doc.line_of(("rules", i, "id"))
                yield PolicyProblem(
                    str(item.path), line, f"duplicate rule id {rule.id!r} (also in {first})"
                )


@dataclass
class _FileChecker:
    name: str
    doc: YamlDocument
    policy: PolicyFile
    problems: list[PolicyProblem] = field(default_factory=list)
    taxonomy: Taxonomy = field(default_factory=Taxonomy.default)

    def report(self, path: YamlPath, message: str) -> None:
        problem = PolicyProblem(self.name, self.doc.line_of(path), message)
        if problem not in self.problems:
            self.problems.append(problem)

    def run(self) -> Taxonomy:
        taxonomy = self.taxonomy = self._taxonomy()
        default = Taxonomy.default()
        for i, kind in enumerate(self.policy.subject_kinds):
            if kind not in default.data_subjects:
                self.report(("subject_kinds", i), f"unknown fideslang data subject {kind!r}")
        for use in self.policy.default_legal_basis:
            if use not in taxonomy.data_uses:
                self.report(("default_legal_basis", use), f"unknown data use {use!r}")
        seen: dict[str, int] = {}
        for i, rule in enumerate(self.policy.rules):
            if rule.id in seen:
                self.report(
                    ("rules", i, "id"),
                    f"duplicate rule id {rule.id!r} (also rule #{seen[rule.id] + 1})",
                )
            seen.setdefault(rule.id, i)
            self._rule(rule, ("rules", i))
        return taxonomy

    def _taxonomy(self) -> Taxonomy:
        default = Taxonomy.default()
        extensions = self.policy.taxonomy
        categories = self._extend(
            default.data_categories, extensions.data_categories, "data_categories"
        )
        uses = self._extend(default.data_uses, extensions.data_uses, "data_uses")
        return Taxonomy(categories, uses, default.data_subjects)

    def _extend(self, base: frozenset[str], extra: dict[str, str], kind: str) -> frozenset[str]:
        known = set(base)
        for key, parent in sorted(extra.items(), key=lambda kv: kv[0].count(".")):
            path: YamlPath = ("taxonomy", kind, key)
            if key in base:
                self.report(path, f"{key!r} is already a fideslang key")
            elif parent not in known:
                self.report(path, f"extension {key!r}: parent {parent!r} is not a known key")
            elif not key.startswith(parent + ".") or "." in key[len(parent) + 1 :]:
                self.report(path, f"extension {key!r} must be a direct child of {parent!r}")
            else:
                known.add(key)
        return frozenset(known)

    def _rule(self, rule: Rule, path: YamlPath) -> None:
        deadline = rule.deadline
        if (
            deadline is not None
            and deadline.after == "erasure_request_opened"
            and "request_fulfilled" not in deadline.unless
        ):
            self.report(
                (*path, "deadline", "unless"),
                "a deadline after erasure_request_opened must list request_fulfilled in "
                "`unless`: a fulfilled request is what stops its clock",
            )
        if rule.when is None:
            return
        self._condition(rule.when, (*path, "when"), rule)
        types, culprit, reason = _possible_types(rule.when, (*path, "when"))
        if not types:
            self.report(culprit, f"rule {rule.id} can never fire: {reason}")

    def _condition(self, condition: Condition, path: YamlPath, rule: Rule) -> None:
        key, operand = condition.key, condition.operand
        here = (*path, key)
        if key in ("all", "any"):
            if not operand:
                effect = "never fires" if key == "any" else "matches every event"
                self.report(here, f"rule {rule.id}: an empty `{key}` {effect}")
            for i, child in enumerate(operand):
                self._condition(child, (*here, i), rule)
            if key == "all":
                self._contradicting_uses(operand, here, rule)
        elif key == "not":
            self._condition(operand, here, rule)
        elif isinstance(operand, Operand):
            self._operand(key, operand, here, rule)
        elif isinstance(operand, tuple) and not operand:
            self.report(here, f"rule {rule.id}: an empty `{key}` list never matches")
        elif key == "recipient_country_not_in":
            for i, code in enumerate(operand):
                if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
                    self.report((*here, i), f"{code!r} is not an ISO 3166-1 alpha-2 country code")
        elif key == "deadline_passed" and rule.deadline is None:
            self.report(
                here, f"rule {rule.id}: deadline_passed needs the rule to have a `deadline`"
            )

    def _operand(self, key: str, operand: Operand, path: YamlPath, rule: Rule) -> None:
        if operand.list_name is not None:
            if operand.list_name not in self.policy.lists:
                self.report(path, f"rule {rule.id}: undefined list {operand.list_name!r}")
                return
            keys = self.policy.lists[operand.list_name]
            where: YamlPath = ("lists", operand.list_name)
            used = f" (list {operand.list_name!r}, used by rule {rule.id} as {key})"
        else:
            keys, where, used = operand.keys or (), path, ""
            if not keys and key != "public_categories_cover":
                self.report(path, f"rule {rule.id}: an empty `{key}` list never matches")
        known, what = self._vocabulary(key)
        if known is None:
            return
        for i, item in enumerate(keys):
            if item not in known:
                self.report((*where, i), f"unknown {what} {item!r}{used}")

    def _vocabulary(self, key: str) -> tuple[frozenset[str] | None, str]:
        if key in _CATEGORY_TESTS:
            return self.taxonomy.data_categories, "data category"
        if key in _USE_TESTS:
            return self.taxonomy.data_uses, "data use"
        return None, "id"

    def _contradicting_uses(self, parts: tuple[Condition, ...], path: YamlPath, rule: Rule) -> None:
        required = [(i, c.use_under) for i, c in enumerate(parts) if c.use_under is not None]
        excluded = [self._keys(c.use_not_under) for c in parts if c.use_not_under is not None]
        for i, operand in required:
            keys = self._keys(operand)
            for ruled_out in excluded:
                if keys and all(not ancestors(k).isdisjoint(ruled_out) for k in keys):
                    self.report(
                        (*path, i),
                        f"rule {rule.id} can never fire: the use must be under "
                        f"{operand.describe()} and not under {', '.join(sorted(ruled_out))}",
                    )

    def _keys(self, operand: Operand) -> frozenset[str]:
        if operand.list_name is not None:
            return frozenset(self.policy.lists.get(operand.list_name, ()))
        return frozenset(operand.keys or ())


def _possible_types(
    condition: Condition, path: YamlPath
) -> tuple[frozenset[EventType], YamlPath, str]:
    """Event types on which `condition` can hold; when none, where and why."""
    key = condition.key
    here = (*path, key)
    if key == "event":
        return frozenset(condition.event or ()), here, "no event type listed"
    if key == "not":
        return ALL_TYPES, here, ""
    if key == "any":
        types: frozenset[EventType] = frozenset()
        for i, child in enumerate(condition.any_ or ()):
            types |= _possible_types(child, (*here, i))[0]
        return types, here, "no alternative of `any` can hold"
    if key == "all":
        types = ALL_TYPES
        for i, child in enumerate(condition.all_ or ()):
            child_types, culprit, reason = _possible_types(child, (*here, i))
            if not child_types:
                return child_types, culprit, reason
            narrowed = types & child_types
            if not narrowed:
                return narrowed, culprit, _mismatch(types, child.key)
            types = narrowed
        return types, here, ""
    return TYPES_OF_TEST.get(key, ALL_TYPES), here, ""


def _mismatch(types: frozenset[EventType], test: str) -> str:
    names = ", ".join(sorted(types))
    field_name = FIELD_OF_TEST.get(test)
    if field_name is None:
        return f"`{test}` excludes the event types left ({names})"
    return f"{names} has no `{field_name}`, which `{test}` tests"
