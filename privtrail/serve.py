"""The store-owning process: ingest loop, alert sink and query API together.

chDB allows one process per data directory, so the process that writes the store is also the
one that answers queries about it.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from types import FrameType

import uvicorn

from config.settings import Settings
from events.key_directory import KeyFollower
from privtrail.api import create_app
from privtrail.brokers import tuned_settings
from privtrail.health import WorkerWatch
from privtrail.security import InsecureSettings, secured
from privtrail.token_setup import prepare_tokens, start_warning
from sinks.alerts import create_alert_sink
from sinks.clickhouse.expiry import expire_raw_bytes
from sinks.clickhouse.store import Store
from sinks.ingest import Ingestor
from sinks.integrity.ledger import Ledger

log = logging.getLogger(__name__)

_SUBJECT_IN_PATH = re.compile(r"^(/lineage/|/access-log/subjects/)[^?]*")


class RedactSubjectIds(logging.Filter):
    """Keeps the subject ids of `/lineage/{subject_id}` and `/access-log/subjects/{subject_id}`
    requests out of the HTTP server's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access record: (client, method, path, http version, status).
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path = _SUBJECT_IN_PATH.sub(r"\1<subject>", args[2])
            record.args = (*args[:2], path, *args[3:])
        return True


def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then stop ingesting, flush, and close the store.

    InsecureSettings, before anything starts, for settings the service must not run with."""
    warning = start_warning(settings)
    if warning is not None:
        log.warning(warning)
    settings = tuned_settings(settings)
    store = Store.open(settings.store_dsn, settings.clickhouse_verify, settings.clickhouse_ca_cert)
    try:
        prepare_tokens(settings, store)
    except InsecureSettings:
        store.close()
        raise
    expire_raw_bytes(store, settings.rejected_raw_ttl)
    ledger = Ledger(settings, store) if settings.integrity_chain else None
    keys = key_follower(settings)
    ingestor = Ingestor(settings, store, ledger=ledger, erasures=keys)
    worker = WorkerWatch(settings)
    alerts = create_alert_sink(settings)
    if alerts is not None:
        ingestor.listeners.append(alerts.send)
    app = create_app(settings, store, ingestor, worker, keys)
    app.state.ledger = ledger  # chains the access log (privtrail/auth.py)
    config = uvicorn.Config(
        secured(app, settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level,
    )
    server = uvicorn.Server(config)
    previous = _exit_on_signals(server)
    logging.getLogger("uvicorn.access").addFilter(RedactSubjectIds())
    try:
        ingestor.start()
        worker.start()
        keys.start()
        server.run()
    finally:
        keys.stop()
        worker.stop()
        ingestor.stop()
        if alerts is not None:
            alerts.close()
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("privtrail service stopped")


def key_follower(settings: Settings) -> KeyFollower:
    """Where lineage queries find the subjects' keys, and the ingest loop the erasures: the
    worker's key topic."""
    return KeyFollower(
        settings.bootstrap,
        settings.app_id,
        settings.pseudonym_master,
        settings.kafka_security.kafka_python(),
    )


def _exit_on_signals(server: uvicorn.Server) -> dict[signal.Signals, signal._HANDLER]:
    # uvicorn replaces these while it runs and re-raises the signal into them afterwards; with
    # the default handlers that would kill the process before the store is flushed and closed.
    def request_exit(sig: int, frame: FrameType | None) -> None:
        server.should_exit = True

    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread receives signals; the caller owns shutdown
    return {sig: signal.signal(sig, request_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
