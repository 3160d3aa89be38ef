"""The public contracts the tests hold the code to, read from the copies in docs/."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
# CI checks out the project next to the shared contracts; the copies in docs/ must match them.
SHARED = REPO.parent / "shared"
CONTRACT_FILES = ("policy-clauses.md", "event-contract.md")
_RULE_ROW = re.compile(r"^\|\s*([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+)\s*\|", re.MULTILINE)
_EXTENSION_ROW = re.compile(r"^\| `([a-z_.]+)` \| `([a-z_.]+)` \|", re.MULTILINE)


def clauses_text() -> str:
    return (DOCS / "policy-clauses.md").read_text(encoding="utf-8")


def clause_rule_ids() -> list[str]:
    """Every rule ID of policy-clauses.md, in document order."""
    return _RULE_ROW.findall(clauses_text().split("## Org extensions", 1)[0])


def clause_extensions() -> dict[str, str]:
    """The org extensions of the taxonomy: key -> parent."""
    section = clauses_text().split("## Org extensions", 1)[1]
    return dict(_EXTENSION_ROW.findall(section))
