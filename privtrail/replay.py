"""`privtrail replay`: stored history re-judged under a candidate policy, and what it changes.

The history comes from the query API (the store belongs to the service process); both policy
versions judge it here, in this process. Nothing is written anywhere: live results stay as
they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from config.settings import Settings
from privtrail.client import ApiClient
from privtrail.credentials import api_client
from privtrail.params import parse_since
from streams.rules import PolicyError, YamlPolicySet, load_policy_set
from streams.rules.rejudge import (
    ReplayedFinding,
    ReplayError,
    ReplayReport,
    compare,
    event_from_audit,
)

LIVE_UNCHANGED = (
    "Live results were not changed: the history was re-judged in this process only, "
    "and nothing was written to the store or to Kafka."
)


@dataclass(frozen=True)
class Replay:
    report: ReplayReport
    baseline_path: Path
    candidate_path: Path
    since: datetime | None
    until: datetime | None
    # The policy versions the worker judged the stored records under.
    stored_versions: list[str]
    # Rule ids only the live policy has, and only the candidate has.
    dropped_rules: list[str]
    new_rules: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            **self.report.model_dump(mode="json"),
            "baseline_path": str(self.baseline_path),
            "candidate_path": str(self.candidate_path),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "stored_policy_versions": self.stored_versions,
            "dropped_rules": self.dropped_rules,
            "new_rules": self.new_rules,
        }


def replay_history(
    settings: Settings,
    candidate_path: Path,
    since: str | None = None,
    until: str | None = None,
    org: str | None = None,
    client: ApiClient | None = None,
) -> Replay:
    """Judge the stored history under the live policy (`settings.policies_dir`) and the
    candidate, and compare. Deadlines are judged up to `until`, or else up to the newest event.

    Raises `PolicyError` for an invalid candidate (checked before anything is fetched),
    `ReplayError` for bad arguments or an invalid live policy, `ApiError` if the service
    cannot answer, `RebuildError` for a stored record that is not a valid event.
    """
    candidate = load_policy_set(candidate_path)
    baseline = _live_policy(settings.policies_dir)
    wall = datetime.now(UTC)
    start = _moment(since, "since", wall)
    end = _moment(until, "until", wall)
    if start is not None and end is not None and start >= end:
        raise ReplayError(
            f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})"
        )
    api = client or api_client(settings)
    try:
        records = api.history(since=start, until=end, org=org)
    finally:
        if client is None:
            api.close()
    history = [event_from_audit(record) for record in records]
    now = end or max((event.time for event in history), default=wall)
    return Replay(
        report=compare(history, baseline, candidate, now),
        baseline_path=settings.policies_dir,
        candidate_path=candidate_path,
        since=start,
        until=end,
        stored_versions=sorted({record.policy_version for record in records}),
        dropped_rules=sorted(_rule_ids(baseline) - _rule_ids(candidate)),
        new_rules=sorted(_rule_ids(candidate) - _rule_ids(baseline)),
    )


def _rule_ids(policy: YamlPolicySet) -> set[str]:
    return {rule.rule_id for rule in policy.rules}


def _live_policy(path: Path) -> YamlPolicySet:
    try:
        return load_policy_set(path)
    except PolicyError as error:
        raise ReplayError(f"the live policy at {path} cannot be loaded: {error}") from None


def _moment(text: str | None, name: str, wall: datetime) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_since(text, wall)
    except ValueError as error:
        raise ReplayError(f"--{name}: {error}") from None


def render(replay: Replay, console: Console, examples: int = 3) -> None:
    """The comparison as a table per rule, a few examples of each change, and the versions."""
    report = replay.report
    console.print(
        f"Replayed {report.events} stored events{_window(replay)}; deadlines judged up to "
        f"{report.now:%Y-%m-%d %H:%M:%S %Z}.",
        highlight=False,
    )
    console.print(
        f"baseline [bold]{report.baseline_version}[/] (live policy, {replay.baseline_path})\n"
        f"candidate [bold]{report.candidate_version}[/] ({replay.candidate_path})",
        highlight=False,
    )
    if replay.stored_versions and replay.stored_versions != [report.baseline_version]:
        console.print(
            "[yellow]note:[/] the stored events were judged live under policy version(s) "
            f"{', '.join(replay.stored_versions)}, not only the baseline's",
            highlight=False,
        )
    if not report.changed:
        console.print(
            "[green]No differences:[/] the candidate finds exactly what the live policy finds."
        )
    console.print(_rule_table(report))
    if replay.dropped_rules:
        console.print(f"Rules not in the candidate: {', '.join(replay.dropped_rules)}")
    if replay.new_rules:
        console.print(f"Rules new in the candidate: {', '.join(replay.new_rules)}")
    for change in report.changed:
        _print_examples(console, change.rule_id, "added", change.added, examples)
        _print_examples(console, change.rule_id, "removed", change.removed, examples)
    console.print(f"[bold]{LIVE_UNCHANGED}[/]")


def _window(replay: Replay) -> str:
    since = f" from {replay.since:%Y-%m-%d %H:%M:%S}" if replay.since else ""
    until = f" until {replay.until:%Y-%m-%d %H:%M:%S}" if replay.until else ""
    return since + until


def _rule_table(report: ReplayReport) -> Table:
    table = Table(
        "rule", "org", "baseline", "candidate", "added", "removed", title="Findings per rule"
    )
    for change in report.rules:
        table.add_row(
            change.rule_id,
            change.org,
            str(change.baseline),
            str(change.candidate),
            f"[green]+{len(change.added)}[/]" if change.added else "0",
            f"[red]-{len(change.removed)}[/]" if change.removed else "0",
        )
    return table


def _print_examples(
    console: Console, rule_id: str, what: str, findings: list[ReplayedFinding], examples: int
) -> None:
    if not findings or examples < 1:
        return
    more = f" (first {examples} of {len(findings)})" if len(findings) > examples else ""
    console.print(f"[bold]{rule_id}[/] {what}{more}:", highlight=False)
    for finding in findings[:examples]:
        cause = (
            f"event {finding.event_id}"
            if finding.event_id is not None
            else f"deadline (clock started by event {finding.cause_event_id})"
        )
        console.print(
            f"  {'+' if what == 'added' else '-'} {finding.occurred_at:%Y-%m-%d %H:%M:%S} "
            f"subject {finding.subject_pseudonym}, {cause}: {finding.explanation}",
            highlight=False,
            soft_wrap=True,
        )
