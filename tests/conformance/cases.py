"""The conformance cases, one `<RULE-ID>.yaml` per rule, shared by the in-process and e2e runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from streams.rules.policy import YamlPolicySet

HERE = Path(__file__).parent
POLICIES = HERE.parent.parent / "policies"


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    events: list[dict[str, Any]] = Field(min_length=1)
    expect: list[str]
    now: Any = None
    policy: dict[str, Any] | None = None


class CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: str
    cases: list[Case] = Field(min_length=1)


def case_files() -> dict[str, CaseFile]:
    """Every case file, by the rule ID it is named after."""
    files = {}
    for path in sorted(HERE.glob("*.yaml")):
        parsed = CaseFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        assert parsed.rule == path.stem, f"{path.name} is about {parsed.rule}; name it after it"
        files[path.stem] = parsed
    return files


def org_of(policy: YamlPolicySet, rule_id: str) -> str:
    orgs = {info.rule_id: info.org for info in policy.rules}
    assert rule_id in orgs, f"no policy file has rule {rule_id}"
    return orgs[rule_id]
