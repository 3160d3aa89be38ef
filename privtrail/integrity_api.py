"""Routes for auditors: verify the stored trail, and export its signed checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from config.settings import Settings
from privtrail.auth import Caller, CallerDep
from privtrail.params import time_query
from sinks.clickhouse.store import Store
from sinks.integrity.ledger import Ledger
from sinks.integrity.signing import Checkpoint, Signer, load_signer
from sinks.integrity.source import KafkaSource, Source, Sources
from sinks.integrity.tables import ensure_integrity_schema, read_checkpoints
from sinks.integrity.verify import VerifyReport, verify


class CheckpointExport(BaseModel):
    """Everything needed to check the signed heads outside privtrail: anchor the newest one
    anywhere (a ticket, a notary, another system) and compare later."""

    key_id: str
    # Ed25519, SubjectPublicKeyInfo PEM.
    public_key: str
    checkpoints: list[Checkpoint]


def integrity_router(
    settings: Settings,
    store: Store,
    since_param: Callable[[str], datetime],
    org_param: Callable[[str], str],
) -> APIRouter:
    """`since_param` and `org_param` check a query's values as every other route does: a
    422 naming the parameter, an org in any case."""
    router = APIRouter(tags=["integrity"])
    signer: list[Signer] = []

    def signing() -> Signer:
        # Loaded on first use: the store writer makes the data dir's key when it starts.
        if not signer:
            signer.append(load_signer(settings.integrity_key_path, settings.data_dir))
            ensure_integrity_schema(store)
        return signer[0]

    @router.get("/verify", response_model=VerifyReport)
    def verify_trail(
        request: Request,
        caller: CallerDep,
        since: Annotated[
            str | None,
            time_query(
                "Only rows chained at or after; rows no chain entry covers are reported "
                "whenever they are."
            ),
        ] = None,
        org: Annotated[str | None, Query(description="Only this org's rows.")] = None,
    ) -> VerifyReport:
        """Recompute every hash chain and signed checkpoint and compare them with the stored
        rows: each edited, deleted, inserted, reordered or cut-off row is named by its id."""
        start = since_param(since) if since is not None else None
        org = org_param(org) if org is not None else None
        key = signing()
        scope = _verified_org(caller, org)
        return verify(store, key.public_key, key.key_id, _source(request), start, scope)

    @router.get("/checkpoints", response_model=CheckpointExport)
    def checkpoints() -> CheckpointExport:
        """Every signed checkpoint, oldest first, with the public key that checks them."""
        key = signing()
        stored = read_checkpoints(store, key.key_id)
        return CheckpointExport(
            key_id=key.key_id,
            public_key=key.public_pem(),
            checkpoints=[row.checkpoint() for row in stored],
        )

    def _source(request: Request) -> Source:
        # The running Ledger knows the access log's chain beyond what the store holds.
        ledger: Ledger | None = getattr(request.app.state, "ledger", None)
        kafka = KafkaSource(settings)
        return kafka if ledger is None else Sources(kafka, ledger)

    return router


def _verified_org(caller: Caller, org: str | None) -> str | None:
    """The one org a verify run covers (None: every org, for a token holding `*`): its
    findings name rows by id, so a token sees none of another org's."""
    orgs = caller.orgs_to_read(org)
    if orgs is None or len(orgs) == 1:
        return None if orgs is None else orgs[0]
    raise HTTPException(422, f"org: this token holds {', '.join(orgs)}; name one to verify")
