"""fideslang taxonomy keys, extended per org, with hierarchical matching."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from fideslang.default_taxonomy import DEFAULT_TAXONOMY


class TaxonomyError(ValueError):
    """An extension that does not fit into the taxonomy tree."""


def is_under(key: str, ancestor: str) -> bool:
    """True when `key` is `ancestor` or one of its descendants (`a.b` is under `a`, `ab` is not)."""
    return key == ancestor or key.startswith(ancestor + ".")


def any_under(keys: Iterable[str], ancestors: Iterable[str]) -> bool:
    ancestors = tuple(ancestors)
    return any(is_under(key, a) for key in keys for a in ancestors)


@dataclass(frozen=True)
class Taxonomy:
    """The keys an event may use for data categories, data uses and data subjects."""

    data_categories: frozenset[str]
    data_uses: frozenset[str]
    data_subjects: frozenset[str]

    @classmethod
    def default(cls) -> Taxonomy:
        return _fideslang_default()

    def extend(
        self,
        *,
        data_categories: Mapping[str, str] | None = None,
        data_uses: Mapping[str, str] | None = None,
    ) -> Taxonomy:
        """A taxonomy with extra keys, each given as `key -> parent`; the parent must exist."""
        return Taxonomy(
            data_categories=_extended(self.data_categories, data_categories or {}, "data category"),
            data_uses=_extended(self.data_uses, data_uses or {}, "data use"),
            data_subjects=self.data_subjects,
        )


def _extended(keys: frozenset[str], extra: Mapping[str, str], what: str) -> frozenset[str]:
    known = set(keys)
    # Parents may themselves be extensions, so add in order of depth.
    for key, parent in sorted(extra.items(), key=lambda kv: kv[0].count(".")):
        if parent not in known:
            raise TaxonomyError(f"{what} extension {key!r}: parent {parent!r} is not a known key")
        if not key.startswith(parent + ".") or "." in key[len(parent) + 1 :]:
            raise TaxonomyError(f"{what} extension {key!r} must be a direct child of {parent!r}")
        known.add(key)
    return frozenset(known)


@cache
def _fideslang_default() -> Taxonomy:
    return Taxonomy(
        data_categories=frozenset(c.fides_key for c in DEFAULT_TAXONOMY.data_category),
        data_uses=frozenset(u.fides_key for u in DEFAULT_TAXONOMY.data_use),
        data_subjects=frozenset(s.fides_key for s in DEFAULT_TAXONOMY.data_subject),
    )
