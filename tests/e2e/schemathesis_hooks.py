"""Schemathesis hooks for tests/e2e/test_schema_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

A `rule` filter must be one of the `org` filter's rules, a constraint between two parameters
that an OpenAPI schema cannot state (tests/unit/test_api.py covers its 422). Each generated
request that names both is sent with the org of its rule, so it keeps every other value drawn.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from config.settings import REPO_POLICIES
from streams.rules import load_policy_set

_ORG_OF_RULE = {rule.rule_id: rule.org for rule in load_policy_set(REPO_POLICIES).rules}


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    query = case.query
    if not isinstance(query, dict):
        return
    # Only a pair of valid values is made to agree: a negative case's invalid one (a list, a
    # number, an unknown name) stays as drawn, to be refused.
    rule, org = query.get("rule"), query.get("org")
    if isinstance(rule, str) and rule in _ORG_OF_RULE and org in _ORG_OF_RULE.values():
        query["org"] = _ORG_OF_RULE[rule]
