"""What the query commands print: answers laid out to read in a terminal of any width, 80
columns included."""

from __future__ import annotations

from rich.table import Table

TIME = "%Y-%m-%d %H:%M:%S"
INDENT = 2


def timeline_grid() -> Table:
    """Two columns: a time that never wraps, then what happened, wrapped beside it."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    # Long ids and category names fold onto the next line rather than end in an ellipsis.
    grid.add_column(overflow="fold")
    return grid
