from __future__ import annotations

import pytest

from tests.contract import CONTRACT_FILES, DOCS, SHARED, clause_extensions, clause_rule_ids


@pytest.mark.parametrize("name", CONTRACT_FILES)
def test_docs_copy_matches_the_shared_contract(name: str) -> None:
    if not (SHARED / name).is_file():
        pytest.skip(f"no shared contracts checked out at {SHARED}")
    assert (DOCS / name).read_bytes() == (SHARED / name).read_bytes(), (
        f"docs/{name} differs from {SHARED / name}: copy the current contract into docs/"
    )


def test_the_clause_list_parses() -> None:
    ids = clause_rule_ids()
    assert len(ids) == 28 and len(set(ids)) == 28
    assert {"CX-WA-ADS-001", "XA-EMP-001", "LX-TLS-012"} <= set(ids)
    assert clause_extensions()["user.content.private.whatsapp_message"] == "user.content.private"
