"""How long a query command takes against a running stack, next to same-run yardsticks.

    .venv/bin/python bench/cli_latency.py
    .venv/bin/python bench/cli_latency.py --runs 20 --events 2000
    .venv/bin/python bench/cli_latency.py --compare /path/to/an/older/checkout

Starts the stack (embedded broker, worker, store/API) on free 127.0.0.1 ports in a temporary
directory, stores some demo events, then times, in rounds so that a busy machine slows every
command alike, fresh processes of:

- `python -c pass`: the interpreter alone;
- the same GET /violations with a bare client (stdlib urllib), in a fresh process;
- `privtrail violations` and `privtrail lineage SUBJECT --org ORG`, as a person runs them;
- with `--compare DIR`, the same two commands of the privtrail checkout in DIR too (run from
  there, so they import its code) against the same stack: a before/after in one run.

It prints the median and fastest wall time of each, the median CPU time (user + system) each
process used, which a busy machine inflates less than wall time, the CLI's ratios to the
yardsticks, and the machine's load average before and after the rounds; it never judges them.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from config.settings import Settings
from events.emitter import Emitter
from privtrail.brokers import embedded_broker
from privtrail.brokers.apache_kafka import free_port
from privtrail.credentials import api_client, local_token
from privtrail.demo import default_start, demo_events
from privtrail.stack import Stack

REPO = Path(__file__).resolve().parent.parent
SEED = 7
BROKER_START_SECONDS = 120.0
STORE_TIMEOUT_SECONDS = 120.0
VIOLATIONS_LIMIT = 100


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="privtrail-cli-latency-") as tmp:
        # Started apart from the stack to give it longer: on a busy machine Kafka can take
        # more than the stack's own start timeout.
        broker = embedded_broker("kafka", free_port(), Path(tmp) / "broker")
        broker.start(timeout=BROKER_START_SECONDS)
        try:
            fields = {"api_port": free_port(), "kafka_bootstrap": broker.bootstrap}
            settings = Settings.model_validate({"data_dir": Path(tmp), **fields})
            with Stack(settings, say=print) as stack:
                subject, org = store_demo(stack, options.events)
                token = local_token(stack.settings)
                commands = commands_to_time(settings.api_url, token, subject, org, options.compare)
                load_before = os.getloadavg()[0]
                timings = time_rounds(commands, options.runs, stack.settings.as_env())
                load_after = os.getloadavg()[0]
        finally:
            broker.stop()
    report(timings)
    print(
        f"load average (1 min) {load_before:.1f} before the rounds, {load_after:.1f} after, "
        f"on {os.cpu_count()} cores"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="rounds of every command")
    parser.add_argument("--events", type=int, default=2000, help="demo events stored first")
    parser.add_argument("--compare", type=Path, help="another privtrail checkout to time too")
    return parser.parse_args(argv)


def store_demo(stack: Stack, count: int) -> tuple[str, str]:
    """Send `count` demo events, wait until they are stored; a subject to ask the lineage of."""
    messages = list(demo_events(SEED, count, default_start(), malformed_share=0))
    topic = stack.settings.topics.events
    with Emitter(stack.bootstrap, source="/bench/cli", topic=topic) as emitter:
        for message in messages:
            emitter.send_raw(message.key, message.value)
    api = api_client(stack.settings)
    deadline = time.monotonic() + STORE_TIMEOUT_SECONDS
    while api.stats().events < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"fewer than {count} events stored in {STORE_TIMEOUT_SECONDS:.0f} s")
        time.sleep(0.5)
    event = next(m.event for m in messages if m.event is not None)
    return event.data.subject.id.get_secret_value(), event.data.org


Command = tuple[list[str], Path]  # argv, and the directory it runs in


def commands_to_time(
    api_url: str, token: str | None, subject: str, org: str, compare: Path | None
) -> dict[str, Command]:
    python = sys.executable
    url = f"{api_url}/violations?limit={VIOLATIONS_LIMIT}"
    # The same request the CLI sends, with the stack's API token.
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    bare = (
        "import urllib.request; urllib.request.urlopen("
        f"urllib.request.Request({url!r}, headers={headers!r})).read()"
    )
    queries = {
        "privtrail violations": [python, "-m", "privtrail", "violations"],
        "privtrail lineage": [python, "-m", "privtrail", "lineage", subject, "--org", org],
    }
    commands = {
        "python -c pass": ([python, "-c", "pass"], REPO),
        "bare GET /violations": ([python, "-c", bare], REPO),
        **{name: (argv, REPO) for name, argv in queries.items()},
    }
    if compare is not None:
        commands |= {f"{name} (compared)": (argv, compare) for name, argv in queries.items()}
    return commands


Timings = dict[str, list[tuple[float, float]]]  # per command: (wall, CPU) seconds of each run


def time_rounds(commands: dict[str, Command], runs: int, env: dict[str, str]) -> Timings:
    timings: Timings = {name: [] for name in commands}
    for _ in range(runs):
        for name, (argv, cwd) in commands.items():
            cpu_before = _children_cpu()
            started = time.perf_counter()
            done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
            timings[name].append((time.perf_counter() - started, _children_cpu() - cpu_before))
            if done.returncode != 0:
                raise SystemExit(f"{name} failed ({done.returncode}): {done.stderr.decode()}")
    return timings


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(timings: Timings) -> None:
    wall = {name: [w for w, _ in runs] for name, runs in timings.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in timings.items()}
    medians = {name: statistics.median(values) for name, values in wall.items()}
    print(f"a fresh process, {len(wall['python -c pass'])} rounds (wall median, fastest; CPU):")
    for name, values in wall.items():
        print(
            f"  {name:35} {medians[name] * 1000:7.0f} ms {min(values) * 1000:7.0f} ms "
            f"{cpu[name] * 1000:7.0f} ms CPU"
        )
    for name in (name for name in medians if name.startswith("privtrail")):
        print(
            f"  {name}: wall / bare GET {medians[name] / medians['bare GET /violations']:.1f}x, "
            f"/ python -c pass {medians[name] / medians['python -c pass']:.1f}x; "
            f"CPU / bare GET {cpu[name] / cpu['bare GET /violations']:.1f}x"
        )


if __name__ == "__main__":
    main()
