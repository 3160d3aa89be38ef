"""The services `privtrail up` runs together, one at a time (`worker`, `serve`), and what
they need set up first (`topics`, `install-kafka`)."""

from __future__ import annotations

import typer

from config.settings import Settings
from privtrail.cli.base import console, errors, fail


def worker() -> None:
    """Run one stream-processing worker (Faust) in the foreground."""
    from privtrail.security import DEV_KEY_WARNING, uses_dev_pseudonym_key
    from streams.worker import run_worker

    settings = Settings()
    if uses_dev_pseudonym_key(settings):
        errors.print(f"[yellow]warning:[/] {DEV_KEY_WARNING}", highlight=False)
    run_worker(settings)


def serve() -> None:
    """Run the store writer and query API: the one process that owns the ClickHouse store."""
    from privtrail.security import InsecureSettings
    from privtrail.serve import serve as run_serve

    try:
        run_serve(Settings())
    except InsecureSettings as exc:
        raise fail(str(exc)) from None


def topics() -> None:
    """Create the topics with their partition counts (idempotent; checks existing ones)."""
    from privtrail.topics import TopicError, ensure_topics

    settings = Settings()
    try:
        ensure_topics(settings)
    except TopicError as exc:
        raise fail(str(exc)) from None
    console.print(f"topics ready on {settings.bootstrap} ({settings.partitions} partitions)")


def install_kafka() -> None:
    """Fetch the embedded Kafka broker's jars with Maven (`make install` runs this)."""
    import shutil

    from privtrail.brokers.apache_kafka import configured_lib_dir
    from privtrail.brokers.kafka_jars import KAFKA_VERSION, JarsUnavailable, install_jars

    lib_dir = configured_lib_dir()
    try:
        install_jars(lib_dir, shutil.which("mvn"))
    except JarsUnavailable as exc:
        # One unwrapped line: it is all `make install` prints about it before going on.
        errors.print(
            f"Kafka {KAFKA_VERSION} not installed, privtrail will run noida: {exc}",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    console.print(f"Kafka {KAFKA_VERSION} jars installed in {lib_dir}")
