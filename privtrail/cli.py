"""The `privtrail` command: run the stack, emit events, and ask the audit trail questions."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from config.settings import Settings
from privtrail.client import ApiClient, ApiError
from privtrail.token_cli import add_access_commands

# Each command imports what only it needs: a query loads the HTTP client, not the answers'
# models, rich, the emitter, the judge's validation or the stack (see bench/cli_latency.py).
if TYPE_CHECKING:
    from rich.console import Console

    from events.emitter import Emitter
    from events.outputs import Violation
    from privtrail.demo import DemoSubject
    from privtrail.schemas import Stats
    from privtrail.stack import Stack

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


class _ConsoleOnFirstUse:
    """Turns into a rich Console (`options` its arguments) when an attribute is first read:
    the query commands print without rich and need not import it (bench/cli_latency.py)."""

    def __init__(self, **options: Any) -> None:
        self._options = options

    def __getattr__(self, name: str) -> Any:
        from rich.console import Console

        options = self.__dict__.pop("_options")
        object.__setattr__(self, "__class__", Console)
        Console.__init__(cast("Console", self), **options)
        return getattr(self, name)


console = cast("Console", _ConsoleOnFirstUse())
errors = cast("Console", _ConsoleOnFirstUse(stderr=True))

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


@app.command()
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
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        console.print("stopped")


def _warn_of_insecure_settings(settings: Settings) -> None:
    # Printed here once: the worker's and the store's own warnings go to their log files.
    from privtrail.security import InsecureSettings
    from privtrail.token_setup import start_warning

    try:
        warning = start_warning(settings)
    except InsecureSettings as exc:
        raise _fail(str(exc)) from None
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


@app.command()
def worker() -> None:
    """Run one stream-processing worker (Faust) in the foreground."""
    from privtrail.security import DEV_KEY_WARNING, uses_dev_pseudonym_key
    from streams.worker import run_worker

    settings = Settings()
    if uses_dev_pseudonym_key(settings):
        errors.print(f"[yellow]warning:[/] {DEV_KEY_WARNING}", highlight=False)
    run_worker(settings)


@app.command()
def serve() -> None:
    """Run the store writer and query API: the one process that owns the ClickHouse store."""
    from privtrail.security import InsecureSettings
    from privtrail.serve import serve as run_serve

    try:
        run_serve(Settings())
    except InsecureSettings as exc:
        raise _fail(str(exc)) from None


@app.command()
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
    raw = sys.stdin.buffer.read() if str(file) == "-" else _read(file)
    key = _subject_key(raw)
    try:
        taxonomies = load_policy_set(settings.policies_dir).taxonomies
        # The worker's clock bound too: refuse here what the worker would dead-letter for it.
        event = parse_event(raw, taxonomies, datetime.now(UTC), settings.max_event_skew)
        key = event.data.subject.id.get_secret_value().encode()
    except InvalidEvent as exc:
        if not force:
            raise _fail(f"invalid event: {exc} (use --force to send it anyway)") from None
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
        raise _fail(str(exc)) from None
    console.print(f"sent to {settings.topics.events} at {settings.bootstrap}")


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}") from None


def _subject_key(raw: bytes) -> bytes | None:
    try:
        return str(json.loads(raw)["data"]["subject"]["id"]).encode()
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


@app.command()
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
    found = _ask(
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


@app.command()
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

    answer = _ask(lambda c: c.lineage_json(subject_id, org))
    if as_json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    elif answer["erased_at"] is not None and answer["subject_pseudonym"] is None:
        print("\n".join(erased_lines(answer, Screen.stdout())))
    elif answer["edges"] or answer["summary"]["violations"]:
        print("\n".join(lineage_lines(answer, Screen.stdout())))
    else:
        pseudonym = answer["subject_pseudonym"]
        named = f" (pseudonym {pseudonym})" if pseudonym else ""
        raise _fail(
            f"nothing is recorded for this subject in {answer['org']}{named}: no stored event "
            "touched its data and it broke no rule"
        )


@app.command()
def rejected(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Inputs that were rejected, with the field and reason."""
    from rich.table import Table

    found = _ask(lambda c: c.rejected(limit=limit))
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        return
    table = Table("received", "where", "field", "reason", title="Rejected events")
    for r in found:
        table.add_row(f"{r.received_at:%Y-%m-%d %H:%M:%S}", r.rejection_id, r.field, r.reason)
    console.print(table)


@policy_app.command("check")
def policy_check(
    path: Annotated[Path, typer.Argument(help="A policy file or directory.")] = Path("policies"),
) -> None:
    """Validate policy files: unknown keys, duplicate IDs, conditions that can never fire."""
    from streams.rules.check import check_policies

    problems = check_policies(path)
    for problem in problems:
        errors.print(f"{problem.file}:{problem.line}: {problem.message}", highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print(f"[green]{path}: policies OK[/]")


def _ask(question: Any) -> Any:
    from privtrail.credentials import api_client

    try:
        return question(api_client(Settings()))
    except ApiError as exc:
        raise _fail(str(exc)) from None


# Verification reads the whole store: far longer than a query.
VERIFY_TIMEOUT_SECONDS = 600.0


@app.command()
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
        raise _fail(str(exc)) from None
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        render_report(report, console)
    if not report.ok:
        raise typer.Exit(1)


@checkpoints_app.command("export")
def checkpoints_export(
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of standard output.")
    ] = None,
) -> None:
    """Every signed checkpoint and the public key, as JSON: anchor the newest one elsewhere."""
    exported = _ask(lambda c: c.checkpoints())
    text = exported.model_dump_json(indent=2)
    if output is None:
        print(text)
        return
    output.write_text(text + "\n")
    errors.print(f"{len(exported.checkpoints)} checkpoint(s) written to {output}")


@checkpoints_app.command("check")
def checkpoints_check(
    exported: Annotated[Path, typer.Argument(help="A file `checkpoints export` wrote.")],
) -> None:
    """Check an export's signatures and links offline, with no service running. Exits 1 if
    any checkpoint does not verify."""
    from privtrail.integrity_api import CheckpointExport
    from sinks.integrity.signing import check_export

    export = CheckpointExport.model_validate_json(_read(exported))
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


@app.command()
def topics() -> None:
    """Create the topics with their partition counts (idempotent; checks existing ones)."""
    from privtrail.topics import TopicError, ensure_topics

    settings = Settings()
    try:
        ensure_topics(settings)
    except TopicError as exc:
        raise _fail(str(exc)) from None
    console.print(f"topics ready on {settings.bootstrap} ({settings.partitions} partitions)")


@app.command("install-kafka")
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


@app.command()
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
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
        errors.print(LIVE_UNCHANGED, highlight=False, soft_wrap=True)
        return
    render(result, console)
