"""The questions asked of the audit trail: violations, a subject's lineage, rejected inputs,
and the replay of stored history under another policy version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from config.settings import Settings
from privtrail.cli.base import JsonFlag, ask, console, errors, fail
from privtrail.client import ApiError


def violations(
    org: Annotated[str | None, typer.Option(help="Only this org.")] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule ID (any case).")] = None,
    severity: Annotated[
        list[str] | None,
        typer.Option(help="Only this severity: low, medium, high or critical; repeatable."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="ISO time or a span such as 15m, 2h, 7d.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    retracted: Annotated[bool, typer.Option(help="Also those late evidence retracted.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Violations found, newest first. An unknown org, rule ID or severity is an error that
    lists the valid ones."""
    found = ask(
        lambda c: c.violations_json(
            org=org,
            rule=rule,
            since=since,
            limit=limit,
            retracted=retracted,
            severity=severity or (),
        )
    )
    if as_json:
        print(json.dumps(found, indent=2))
        return
    from privtrail.views import Screen
    from privtrail.views.violations import violation_lines

    print("\n".join(violation_lines(found, Screen.stdout())))


def lineage(
    subject_id: Annotated[str, typer.Argument(help="The subject's id in the org's systems.")],
    org: Annotated[str, typer.Option(help="The org (controller) the subject belongs to.")],
    as_json: JsonFlag = False,
) -> None:
    """Where a subject's data went: the rules it broke, then a timeline per recipient it was
    shared with and per actor that accessed it.

    Exits 1 when the org is unknown (the error lists the known orgs), and, unless --json,
    when nothing is recorded for the subject: with --json an empty lineage is the answer.
    """
    from privtrail.views import Screen
    from privtrail.views.lineage import erased_lines, lineage_lines

    answer = ask(lambda c: c.lineage_json(subject_id, org))
    if as_json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    elif answer["erased_at"] is not None and answer["subject_pseudonym"] is None:
        print("\n".join(erased_lines(answer, Screen.stdout())))
    elif answer["edges"] or answer["summary"]["violations"]:
        print("\n".join(lineage_lines(answer, Screen.stdout())))
    else:
        pseudonym = answer["subject_pseudonym"]
        named = f" (pseudonym {pseudonym})" if pseudonym else ""
        raise fail(
            f"nothing is recorded for this subject in {answer['org']}{named}: no stored event "
            "touched its data and it broke no rule"
        )


def rejected(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Inputs that were rejected, with the field and reason."""
    from rich.table import Table

    found = ask(lambda c: c.rejected(limit=limit))
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        return
    table = Table("received", "where", "field", "reason", title="Rejected events")
    for r in found:
        table.add_row(f"{r.received_at:%Y-%m-%d %H:%M:%S}", r.rejection_id, r.field, r.reason)
    console.print(table)


def replay(
    policy: Annotated[
        Path, typer.Option("--policy", help="The candidate policy file or directory.")
    ],
    since: Annotated[
        str | None,
        typer.Option(
            help="Only events at or after: ISO time or a span such as 7d (state built by "
            "earlier events is then unknown to both versions)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only events before: ISO time or a span; deadlines are judged up to it."),
    ] = None,
    org: Annotated[str | None, typer.Option(help="Only this org's history.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-judge stored history under another policy version: per rule, violations added and
    removed compared with the live policy. Live results are not changed.

    Deadlines are judged up to --until, or else up to the newest stored event.
    """
    from privtrail.replay import LIVE_UNCHANGED, render, replay_history
    from streams.rules import PolicyError
    from streams.rules.rejudge import RebuildError, ReplayError

    try:
        result = replay_history(Settings(), policy, since, until, org)
    except PolicyError as exc:
        for problem in exc.problems:
            errors.print(str(problem), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except (ApiError, RebuildError, ReplayError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
        errors.print(LIVE_UNCHANGED, highlight=False, soft_wrap=True)
        return
    render(result, console)
