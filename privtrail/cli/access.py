"""`privtrail token create|list|revoke` (admin tokens) and `privtrail access-log` (auditors):
who may read the audit trail, and who did."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from privtrail.cli.base import JsonFlag, fail

if TYPE_CHECKING:
    from privtrail.access_client import AccessClient
    from sinks.access import AccessEntry, TokenInfo

token_app = typer.Typer(
    help="Manage API tokens (needs an admin token): each has a role and orgs.",
    no_args_is_help=True,
)
console = Console()
errors = Console(stderr=True)

T = TypeVar("T")


def add_access_commands(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.command("access-log")(access_log)


@token_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="analyst, auditor, engineer or admin.")],
    org: Annotated[
        list[str], typer.Option(help="An org the token may read; repeatable; * for every org.")
    ],
    name: Annotated[str, typer.Option(help="Whose token it is, or what it is for.")],
    expires_in_days: Annotated[float, typer.Option(help="Days until it expires.")] = 90,
    no_expiry: Annotated[bool, typer.Option(help="Never expires (revoke it instead).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a token and print it: the only time it is shown, the store keeps its hash."""
    days = None if no_expiry else expires_in_days
    issued = _call(lambda c: c.create_token(role, org, name, days))
    if as_json:
        print(issued.model_dump_json(indent=2))
        return
    expires = issued.expires_at.isoformat() if issued.expires_at else "never"
    console.print(
        f"token {issued.token_id} ({issued.role} of {', '.join(issued.orgs)}), expires {expires}",
        highlight=False,
    )
    print(issued.token)
    errors.print("shown once: the store keeps only its hash", highlight=False)


@token_app.command("list")
def list_tokens(as_json: JsonFlag = False) -> None:
    """Every token within your token's orgs, revoked and expired ones too."""
    found = _call(lambda c: c.tokens())
    if as_json:
        print(json.dumps([t.model_dump(mode="json") for t in found], indent=2))
        return
    from rich.table import Table

    table = Table("id", "role", "orgs", "name", "created", "expires", "state", title="API tokens")
    now = datetime.now(UTC)
    for token in found:
        table.add_row(
            token.token_id,
            token.role,
            ", ".join(token.orgs),
            token.name,
            f"{token.created_at:%Y-%m-%d %H:%M}",
            f"{token.expires_at:%Y-%m-%d %H:%M}" if token.expires_at else "never",
            _state(token, now),
        )
    console.print(table)


@token_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="The token's id (from `list`).")]) -> None:
    """Revoke a token: refused from its next request on. Its record stays."""
    revoked = _call(lambda c: c.revoke(token_id))
    console.print(f"token {revoked.token_id} revoked", highlight=False)


def access_log(
    subject: Annotated[
        str | None, typer.Option(help="Who looked at this subject id (needs --org).")
    ] = None,
    org: Annotated[str | None, typer.Option(help="Requests that read this org.")] = None,
    pseudonym: Annotated[
        str | None, typer.Option(help="Who looked at the subject of this pseudonym.")
    ] = None,
    token: Annotated[str | None, typer.Option(help="Requests made with this token id.")] = None,
    since: Annotated[str | None, typer.Option(help="At or after this ISO time.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Who called the API: token, role, route, orgs read and subject looked at, newest first
    (needs an auditor token)."""
    if subject is not None:
        if org is None:
            raise fail("--subject needs --org: a subject id is only unique within its org")
        found = _call(lambda c: c.subject_access_log(subject, org, limit))
    else:
        params = {
            "org": org,
            "subject_pseudonym": pseudonym,
            "token_id": token,
            "since": since,
            "limit": limit,
        }
        found = _call(lambda c: c.access_log(params))
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in found], indent=2))
        return
    _render_entries(found)


def _render_entries(entries: list[AccessEntry]) -> None:
    from rich.table import Table

    table = Table("at", "token", "role", "request", "orgs", "subject", "status", title="Access log")
    for entry in entries:
        table.add_row(
            f"{entry.at:%Y-%m-%d %H:%M:%S}",
            entry.token_id or "(none)",
            entry.role,
            f"{entry.method} {entry.endpoint}",
            ", ".join(entry.orgs),
            entry.subject_pseudonym or "",
            str(entry.status),
        )
    console.print(table)


def _state(token: TokenInfo, now: datetime) -> str:
    if token.problem(now) is None:
        return "valid"
    return "revoked" if token.revoked_at is not None else "expired"


def _call(question: Callable[[AccessClient], T]) -> T:
    from config.settings import Settings
    from privtrail.access_client import AccessClient
    from privtrail.client import ApiError

    try:
        with closing(AccessClient(Settings())) as client:
            return question(client)
    except ApiError as exc:
        raise fail(str(exc)) from None
