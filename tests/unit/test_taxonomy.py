from __future__ import annotations

import pytest

from events.taxonomy import Taxonomy, TaxonomyError, any_under, is_under


def test_hierarchical_match_is_on_whole_key_segments() -> None:
    assert is_under("marketing.advertising.third_party.targeted", "marketing.advertising")
    assert is_under("marketing", "marketing")
    assert not is_under("marketing", "marketing.advertising")
    assert not is_under("user.contactless", "user.contact")
    assert any_under(["user.name", "user.payment"], ["user.financial", "user.payment"])


def test_default_taxonomy_comes_from_fideslang() -> None:
    taxonomy = Taxonomy.default()
    assert "user.content.private" in taxonomy.data_categories
    assert "marketing.advertising.profiling" in taxonomy.data_uses
    assert "job_applicant" in taxonomy.data_subjects


def test_extensions_nest_under_known_parents_only() -> None:
    extended = Taxonomy.default().extend(
        data_categories={"user.professional": "user", "user.professional.cv": "user.professional"}
    )
    assert {"user.professional", "user.professional.cv"} <= extended.data_categories
    assert "user.professional" not in Taxonomy.default().data_categories
    with pytest.raises(TaxonomyError, match=r"parent 'user\.nothing'"):
        Taxonomy.default().extend(data_categories={"user.nothing.x": "user.nothing"})
    with pytest.raises(TaxonomyError, match="direct child"):
        Taxonomy.default().extend(data_uses={"marketing.a.b": "marketing"})
