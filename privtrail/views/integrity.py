"""`privtrail verify` in the terminal: each finding on one line, then what was checked."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from sinks.integrity.verify import VerifyReport


def render_report(report: VerifyReport, console: Console) -> None:
    if report.findings:
        table = Table("finding", "table", "id", "detail", title="Integrity findings")
        for f in report.findings:
            table.add_row(f.kind, f.table or "-", f.id, f.detail)
        console.print(table)
    for note in report.notes:
        console.print(f"note: {note}", style="yellow", highlight=False)
    anchor = (
        f"checkpoint {report.last_checkpoint} signed {report.last_checkpoint_at:%Y-%m-%d %H:%M:%S}"
        if report.last_checkpoint is not None and report.last_checkpoint_at is not None
        else "no signed checkpoint yet"
    )
    verdict = "[green]intact[/]" if report.ok else f"[red]{len(report.findings)} finding(s)[/]"
    removed = report.payloads_removed
    console.print(
        f"{verdict}: {report.rows_checked} rows, {report.entries_checked} chain entries in "
        f"{report.chains} chains, {report.checkpoints_checked} checkpoints ({anchor})"
        + (f"; {removed} raw inputs expired or erased" if removed else "")
    )
