"""Schemathesis hooks for tests/e2e/test_schema_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

A `rule` filter must be one of the `org` filter's rules, a constraint between two parameters
that an OpenAPI schema cannot state (tests/unit/test_api.py covers its 422). Each generated
request that names both is sent with the org of its rule, so it keeps every other value drawn.

With FUZZ_WITHOUT_TOKEN set, the run sends no token, and every operation that the schema says
needs one must answer 401, whatever else the request holds.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation

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


@schemathesis.check
def refused_without_token(ctx: Any, response: Any, case: Any) -> bool | None:
    """Without a token, an operation that declares `security` answers 401: authorization
    comes before anything else the request could learn, even a 422 about its parameters. A
    body that is not JSON is the exception: FastAPI refuses it (400, or 422 `json_invalid`)
    while reading it, before any dependency runs; the answer holds no data."""
    if (
        not os.environ.get("FUZZ_WITHOUT_TOKEN")
        or case.method.upper() != case.operation.method.upper()
    ):
        return None  # with a token; or a method the path does not take: a 405 for anyone
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH):
        return None  # an invalid path parameter can miss the route: a 404 for anyone
    needs_token = bool(case.operation.definition.raw.get("security"))
    if needs_token and response.status_code != 401 and not _unreadable_body(response):
        raise AssertionError(f"answered {response.status_code} without a token, not 401")
    return None


def _unreadable_body(response: Any) -> bool:
    if response.status_code not in (400, 422):
        return False
    detail = response.json().get("detail")
    if response.status_code == 400:
        return bool(detail == "There was an error parsing the body")
    return all(error.get("type") == "json_invalid" for error in detail)
