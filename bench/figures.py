"""The `--json PATH` option of the bench scripts: their figures, machine-readable, for the
goals table of `bench/suite.py`. What a script prints stays as it was."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the figures to PATH as JSON"
    )


def write_figures(path: Path | None, figures: Mapping[str, Any]) -> None:
    """`figures` as JSON at `path`, when one was asked for."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
