"""What every command shares: the consoles, the error exit, the --json flag, the API call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from config.settings import Settings
from privtrail.client import ApiError

if TYPE_CHECKING:
    from rich.console import Console


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


def fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


def read_file(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}") from None


def ask(question: Any) -> Any:
    from privtrail.credentials import api_client

    try:
        return question(api_client(Settings()))
    except ApiError as exc:
        raise fail(str(exc)) from None
