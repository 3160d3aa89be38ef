"""The `privtrail` command: run the stack, emit events, and ask the audit trail questions.

Each command lives in the module named for what it does; this one only lists them, in the
order `privtrail --help` shows them. Each command imports what only it needs: a query loads
the HTTP client, not the answers' models, rich, the emitter, the judge's validation or the
stack (see bench/cli_latency.py).
"""

from __future__ import annotations

import typer

from privtrail.cli import emit, integrity, policy, queries, services, up
from privtrail.cli.access import add_access_commands

__all__ = ["app"]

app = typer.Typer(
    help="privtrail: live data flows checked against your own privacy policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(help="Validate policy-as-code files.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
checkpoints_app = typer.Typer(help="Signed integrity checkpoints.", no_args_is_help=True)
app.add_typer(checkpoints_app, name="checkpoints")
add_access_commands(app)

app.command()(up.up)
app.command()(services.worker)
app.command()(services.serve)
app.command()(emit.emit)
app.command()(queries.violations)
app.command()(queries.lineage)
app.command()(queries.rejected)
policy_app.command("check")(policy.policy_check)
app.command()(integrity.verify)
checkpoints_app.command("export")(integrity.checkpoints_export)
checkpoints_app.command("check")(integrity.checkpoints_check)
app.command()(services.topics)
app.command("install-kafka")(services.install_kafka)
app.command()(queries.replay)
