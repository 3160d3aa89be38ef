"""`privtrail policy check`: validate policy-as-code files before they are deployed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from privtrail.cli.base import console, errors


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
