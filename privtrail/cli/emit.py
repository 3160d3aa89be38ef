"""`privtrail emit`: send one CloudEvent, checked as the worker would check it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from config.settings import Settings
from privtrail.cli.base import console, errors, fail, read_file


def emit(
    file: Annotated[
        Path, typer.Argument(help="A JSON file with one CloudEvent, or - for stdin.")
    ] = Path("-"),
    force: Annotated[
        bool, typer.Option(help="Send even if invalid, to exercise the dead-letter path.")
    ] = False,
) -> None:
    """Send one CloudEvent to privacy.events, keyed by its subject id."""
    from datetime import UTC, datetime

    from events.emitter import EmitError, Emitter
    from events.validation import InvalidEvent, parse_event
    from streams.rules.policy import load_policy_set

    settings = Settings()
    raw = sys.stdin.buffer.read() if str(file) == "-" else read_file(file)
    key = _subject_key(raw)
    try:
        taxonomies = load_policy_set(settings.policies_dir).taxonomies
        # The worker's clock bound too: refuse here what the worker would dead-letter for it.
        event = parse_event(raw, taxonomies, datetime.now(UTC), settings.max_event_skew)
        key = event.data.subject.id.get_secret_value().encode()
    except InvalidEvent as exc:
        if not force:
            raise fail(f"invalid event: {exc} (use --force to send it anyway)") from None
        errors.print(f"[yellow]warning:[/] sending an invalid event: {exc}")
    try:
        with Emitter(
            settings.bootstrap,
            source="/privtrail/cli",
            topic=settings.topics.events,
            **settings.kafka_security.kafka_python(),
        ) as e:
            e.send_raw(key, raw)
            e.flush()
    except EmitError as exc:
        raise fail(str(exc)) from None
    console.print(f"sent to {settings.topics.events} at {settings.bootstrap}")


def _subject_key(raw: bytes) -> bytes | None:
    try:
        return str(json.loads(raw)["data"]["subject"]["id"]).encode()
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
