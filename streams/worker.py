"""Entry point of a worker process: load the policies, build the app, run it until stopped."""

from __future__ import annotations

import faust

from config.settings import Settings
from streams.app import create_app
from streams.rules.policy import load_policy_set


def run_worker(settings: Settings) -> None:
    policy = load_policy_set(settings.policies_dir)
    app = create_app(settings, policy)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
