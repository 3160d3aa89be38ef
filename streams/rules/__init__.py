"""Rule evaluation behind one small interface: a `PolicySet` judges events and deadlines."""

from streams.rules.base import Finding, PolicySet, RuleInfo

__all__ = ["Finding", "PolicySet", "RuleInfo"]
