"""The values the query API's org and rule filters accept, so an unknown one is an error that
lists the valid ones instead of an empty answer.

Known are the orgs and rules of the live policy and, so that history judged under an earlier
policy stays reachable, those of stored violations. Both are matched in any case and answered
in their canonical spelling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

RuleKey = tuple[str, str]  # (org, rule id)


class UnknownValue(ValueError):
    """A filter value that no policy or stored violation knows; the message lists valid ones."""


class KnownValues:
    def __init__(self, policy: Iterable[RuleKey], stored: Callable[[], Iterable[RuleKey]]) -> None:
        self._policy = frozenset(policy)
        # Asked only on a miss, so a valid value costs no store query.
        self._stored = stored

    def org(self, text: str) -> str:
        """The org named `text` in any case, or UnknownValue listing the known orgs."""
        found = _match(text, _orgs(self._policy))
        if found is not None:
            return found
        known = _orgs(self._everything())
        found = _match(text, known)
        if found is None:
            raise UnknownValue(f"unknown org {text!r}; known orgs: {_listed(known)}")
        return found

    def rule(self, text: str, org: str | None) -> str:
        """The rule id `text` in any case, of `org` when given, or UnknownValue listing the
        rule ids that would be valid."""
        found = _match(text, _rules_of(self._policy, org))
        if found is not None:
            return found
        known = _rules_of(self._everything(), org)
        found = _match(text, known)
        if found is None:
            scope = f"org {org}'s rule ids" if org else "known rule ids"
            raise UnknownValue(f"unknown rule id {text!r}; {scope}: {_listed(known)}")
        return found

    def policy_orgs(self) -> set[str]:
        """The live policy's orgs, in their canonical spelling."""
        return _orgs(self._policy)

    def policy_rules(self) -> set[str]:
        """The live policy's rule ids, in their canonical spelling."""
        return _rules_of(self._policy, None)

    def _everything(self) -> frozenset[RuleKey]:
        return self._policy | frozenset(self._stored())


def _orgs(rules: Iterable[RuleKey]) -> set[str]:
    return {org for org, _ in rules}


def _rules_of(rules: Iterable[RuleKey], org: str | None) -> set[str]:
    return {rule for owner, rule in rules if org in (None, owner)}


def _match(text: str, candidates: Iterable[str]) -> str | None:
    wanted = text.strip().casefold()
    return next((value for value in candidates if value.casefold() == wanted), None)


def _listed(values: Iterable[str]) -> str:
    return ", ".join(sorted(values)) or "none yet"
