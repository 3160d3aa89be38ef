"""`privtrail up`: run the whole stack in the foreground, optionally driving the demo, and
print violations as they are found, health changes, and a closing summary."""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Annotated

import typer

from config.settings import Settings
from privtrail.cli.base import console, fail
from privtrail.client import ApiClient, ApiError

if TYPE_CHECKING:
    from events.emitter import Emitter
    from events.outputs import Violation
    from privtrail.demo import DemoSubject
    from privtrail.schemas import Stats
    from privtrail.stack import Stack


def up(
    demo: Annotated[bool, typer.Option(help="Drive the reference orgs' demo workload.")] = False,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    events: Annotated[int, typer.Option(help="Demo events to emit.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Demo workload seed.")] = 7,
) -> None:
    """Start the broker (unless PRIVTRAIL_KAFKA_BOOTSTRAP is set), worker, store and query API."""
    from privtrail.brokers import BrokerError
    from privtrail.stack import Stack, StackError, violation_feed
    from privtrail.topics import TopicError

    settings = Settings()
    _warn_of_insecure_settings(settings)
    started = time.monotonic()
    # A SIGTERM must stop the stack as cleanly as Ctrl-C does, or its processes outlive us.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with Stack(settings, say=_say) as stack:
            console.print(
                f"[green]privtrail is up[/]: Kafka {stack.bootstrap}, store {settings.store_dsn}, "
                f"API {settings.api_url} (dashboard at /, OpenAPI at /docs)"
            )
            _say(f"API token (admin, for the dashboard's sign-in): {_token_source(settings)}")
            run = _Run(started, _store_counts(stack))
            with violation_feed(settings, stack.bootstrap, _print_violation):
                try:
                    if demo:
                        _run_demo(stack.bootstrap, settings, events, seed, run)
                    _serve_until(stack, duration, started)
                    console.print(f"stopping: --duration {duration:g} s is over")
                except KeyboardInterrupt:
                    console.print("stopping")
            _print_summary(run, _store_counts(stack))
        console.print("stopped")
    except (StackError, BrokerError, TopicError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        console.print("stopped")


def _warn_of_insecure_settings(settings: Settings) -> None:
    # Printed here once: the worker's and the store's own warnings go to their log files.
    from privtrail.security import InsecureSettings
    from privtrail.token_setup import start_warning

    try:
        warning = start_warning(settings)
    except InsecureSettings as exc:
        raise fail(str(exc)) from None
    if warning is not None:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def _token_source(settings: Settings) -> str:
    from privtrail.credentials import token_path

    return "PRIVTRAIL_API_TOKEN" if settings.api_token else str(token_path(settings))


class _Run:
    """What the closing summary needs: when the run began, the store's counts then, what the
    demo sent, and, per org, a violating subject of the demo to suggest looking up."""

    def __init__(self, started: float, before: Stats | str) -> None:
        self.started = started
        self.before = before
        self.sent = 0
        self.subjects: dict[str, DemoSubject] = {}


def _store_counts(stack: Stack) -> Stats | str:
    from privtrail.credentials import api_client

    try:
        with api_client(stack.settings) as api:
            return api.stats()
    except ApiError as error:
        return str(error)


def _print_summary(run: _Run, after: Stats | str) -> None:
    from privtrail.summary import summary_lines

    elapsed = time.monotonic() - run.started
    for line in summary_lines(run.sent, elapsed, run.before, after, run.subjects.values()):
        _say(line)


def _say(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve_until(stack: Stack, duration: float | None, started: float) -> None:
    from privtrail.stack import HEALTH_POLL_SECONDS, HealthWatch

    health = HealthWatch(ApiClient(stack.settings.api_url, timeout=HEALTH_POLL_SECONDS))
    while duration is None or time.monotonic() - started < duration:
        stack.check_alive()
        _print_health_change(health.poll())
        time.sleep(0.5)


def _print_health_change(reasons: list[str] | None) -> None:
    from rich.markup import escape

    if reasons:
        why = escape("; ".join(reasons))  # error texts may hold brackets, e.g. "[Errno 111]"
        console.print(f"[bold yellow]privtrail is degraded:[/] {why}", highlight=False)
    elif reasons is not None:
        console.print("[green]privtrail is healthy again[/]")


def _run_demo(bootstrap: str, settings: Settings, count: int, seed: int, run: _Run) -> None:
    from events.emitter import Emitter

    topic, security = settings.topics.events, settings.kafka_security.kafka_python()
    with Emitter(bootstrap, source="/privtrail/demo", topic=topic, **security) as emitter:
        _send_demo_with_progress(emitter, count, seed, run)


def _send_demo_with_progress(emitter: Emitter, count: int, seed: int, run: _Run) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from privtrail.demo import LiveDemo, send_demo

    progress = Progress(
        TextColumn("emitting demo events"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )

    def sent(total: int) -> None:
        # send_demo passes the running total, not the increment.
        run.sent = total
        progress.update(task, completed=total)

    with progress:
        task = progress.add_task("demo", total=count)
        # New subject and event ids every run, so the store takes them as new traffic.
        demo = LiveDemo(seed, count)
        run.subjects = demo.subjects
        send_demo(emitter, demo, on_sent=sent)


def _print_violation(violation: Violation) -> None:
    if violation.status == "retracted":
        console.print(
            f"[yellow]retracted[/] {violation.rule_id} [cyan]{violation.org}[/] subject "
            f"[magenta]{violation.subject_pseudonym}[/]: late evidence shows the rule was kept",
            highlight=False,
            soft_wrap=True,
        )
        return
    console.print(
        f"[bold red]{violation.rule_id}[/] [cyan]{violation.org}[/] "
        f"subject [magenta]{violation.subject_pseudonym}[/]: {violation.explanation}",
        highlight=False,
        soft_wrap=True,
    )
