"""Rule evaluation behind one small interface: a `PolicySet` judges events and deadlines."""

from streams.rules.base import Finding, PolicySet, RuleInfo
from streams.rules.check import PolicyError, PolicyProblem, check_policies
from streams.rules.policy import YamlPolicySet, load_policy_set
from streams.rules.replay import SubjectFinding, judge_history

__all__ = [
    "Finding",
    "PolicyError",
    "PolicyProblem",
    "PolicySet",
    "RuleInfo",
    "SubjectFinding",
    "YamlPolicySet",
    "check_policies",
    "judge_history",
    "load_policy_set",
]
