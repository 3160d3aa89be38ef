"""The CLI's consoles, made on first use, work wherever rich takes a console: a progress bar
(which enters the console as a context manager) as well as print."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from privtrail.cli import base


def test_a_console_made_on_first_use_drives_a_progress_bar() -> None:
    out = io.StringIO()
    console = base._ConsoleOnFirstUse(file=out, width=60, color_system=None)

    with Progress(console=console) as progress:
        task = progress.add_task("emitting", total=3)
        progress.update(task, completed=3)
    console.print("done")

    assert isinstance(console, Console)
    assert "emitting" in out.getvalue() and out.getvalue().endswith("done\n")
