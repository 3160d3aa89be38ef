"""`privtrail verify` and `privtrail checkpoints`: the store's hash chains and its signed
checkpoints, checked online or from an export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from config.settings import Settings
from privtrail.cli.base import JsonFlag, ask, console, errors, fail, read_file
from privtrail.client import ApiError

# Verification reads the whole store: far longer than a query.
VERIFY_TIMEOUT_SECONDS = 600.0


def verify(
    since: Annotated[
        str | None,
        typer.Option(help="Only rows chained at or after: ISO time or a span such as 7d."),
    ] = None,
    org: Annotated[str | None, typer.Option(help="Only this org's rows.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Recompute the store's hash chains and signed checkpoints, and name each row edited,
    deleted, inserted, reordered or cut off. Exits 1 on any finding."""
    from privtrail.credentials import api_client
    from privtrail.views.integrity import render_report

    try:
        with api_client(Settings(), timeout=VERIFY_TIMEOUT_SECONDS) as client:
            report = client.verify(since=since, org=org)
    except ApiError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        render_report(report, console)
    if not report.ok:
        raise typer.Exit(1)


def checkpoints_export(
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of standard output.")
    ] = None,
) -> None:
    """Every signed checkpoint and the public key, as JSON: anchor the newest one elsewhere."""
    exported = ask(lambda c: c.checkpoints())
    text = exported.model_dump_json(indent=2)
    if output is None:
        print(text)
        return
    output.write_text(text + "\n")
    errors.print(f"{len(exported.checkpoints)} checkpoint(s) written to {output}")


def checkpoints_check(
    exported: Annotated[Path, typer.Argument(help="A file `checkpoints export` wrote.")],
) -> None:
    """Check an export's signatures and links offline, with no service running. Exits 1 if
    any checkpoint does not verify."""
    from privtrail.integrity_api import CheckpointExport
    from sinks.integrity.signing import check_export

    export = CheckpointExport.model_validate_json(read_file(exported))
    problems = check_export(export.public_key, export.checkpoints)
    for problem in problems:
        errors.print(problem, highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    newest = export.checkpoints[-1] if export.checkpoints else None
    console.print(
        f"{len(export.checkpoints)} checkpoint(s) verify with key {export.key_id}"
        + (f"; newest: {newest.number}, {newest.created_at:%Y-%m-%d %H:%M:%S}" if newest else "")
    )
