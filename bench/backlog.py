"""A worker alone, catching up on a backlog, against a bare consume->produce loop on the same
broker.

    .venv/bin/python bench/backlog.py --events 100000

Starts Kafka on 127.0.0.1 and, as the yardstick, runs bare_loop.py's bare aiokafka loop over N
demo events (consume each from one topic, produce it to another, per batch, flushing before it
commits). Then pre-produces N demo events to the events topic and starts one `privtrail worker`
(all 28 rules, its default settings) with nothing else running: no store, no emitter, no
profiler. The worker's rate is the events it committed from its first commit to its last,
divided by the seconds between, so its start and group join are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from pathlib import Path

from bare_loop import bare_loop, demo_workload
from figures import write_figures
from profile_worker import bench_main, catch_up, preproduce, running_kafka


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000, help="events in the backlog")
    return bench_main(parser, "privtrail-backlog-", argv, _run)


def _run(args: argparse.Namespace, root: Path) -> None:
    with running_kafka(root) as (broker, settings):
        bare = asyncio.run(bare_loop(broker.bootstrap, demo_workload(args.events), settings))
        asyncio.run(preproduce(settings, args.events))
        judged, seconds = catch_up(settings, args.events, root / "worker.log")
    if judged == 0:
        raise SystemExit(
            f"the worker committed all {args.events} events at once: too few to time it "
            f"(batches of {settings.batch_size}); give --events several times that"
        )
    rate = judged / seconds
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"broker: kafka ({broker.release()}); {settings.partitions} partitions")
    print(f"bare consume->produce     {bare.rate:>9,.0f} msgs/s   ({bare.seconds:.1f} s)")
    print(f"worker alone, backlog     {rate:>9,.0f} events/s ({judged} events in {seconds:.1f} s)")
    print(f"worker / bare             {rate / bare.rate:.3f}")
    write_figures(
        args.json,
        {"bare_rate": bare.rate, "rate": rate, "judged": judged, "ratio": rate / bare.rate},
    )


if __name__ == "__main__":
    sys.exit(main())
