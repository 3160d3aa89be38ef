"""What the query commands print: answers laid out to read in a terminal of any width, 80
columns included.

The views lay out the API's JSON answers as plain lines, coloured with ANSI codes on a
terminal. They use neither rich nor the answer models: importing rich and rendering 100
violations with it, or building the models, took a query command longer than its request
(bench/cli_latency.py). The API's models stay the one definition of the answers' shape.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime

TIME = "%Y-%m-%d %H:%M:%S"
INDENT = 2
GAP = 2
# A timeline's text column keeps at least this width in a very narrow terminal.
MIN_TEXT_WIDTH = 20
_SGR = {"bold": "1", "dim": "2", "red": "31", "yellow": "33", "magenta": "35", "cyan": "36"}
_TOKENS = re.compile(r"\n| +|[^ \n]+")

# Text and its style: space-separated names of _SGR, or "" for none.
Piece = tuple[str, str]
# A timeline row: its time, then its text, one list of pieces per line before wrapping.
Row = tuple[str, list[list[Piece]]]


def timestamp(iso: str) -> str:
    """An ISO 8601 time of an answer as the views show it."""
    return f"{datetime.fromisoformat(iso):{TIME}}"


class Screen:
    """Where a view prints: its width, and whether it may colour."""

    def __init__(self, width: int, color: bool) -> None:
        self.width = width
        self.color = color

    @classmethod
    def stdout(cls) -> Screen:
        """Standard output: `COLUMNS` or the terminal's width; colour on a terminal unless
        `NO_COLOR` is set or `TERM` is dumb (https://no-color.org)."""
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        return cls(shutil.get_terminal_size().columns, color and os.environ.get("TERM") != "dumb")

    def paint(self, text: str, style: str) -> str:
        if not (self.color and style and text):
            return text
        codes = ";".join(_SGR[name] for name in style.split())
        return f"\x1b[{codes}m{text}\x1b[0m"

    def wrap(self, pieces: Sequence[Piece], width: int | None = None) -> list[str]:
        """`pieces` as lines of at most `width` columns (the screen's by default), broken at
        spaces and newlines; a word longer than a line is folded onto the next rather than cut
        short."""
        width = max(width or self.width, 1)
        lines: list[list[Piece]] = [[]]
        used = 0
        for space, word in _words(pieces):
            size = sum(len(text) for text, _ in word)
            if space == "\n" or (used and used + len(space) + size > width):
                lines.append([])
                used = 0
            elif used:
                lines[-1].append((space, ""))
                used += len(space)
            for text, style in word:
                while text:
                    if used == width:
                        lines.append([])
                        used = 0
                    part, text = text[: width - used], text[width - used :]
                    lines[-1].append((part, style))
                    used += len(part)
        return ["".join(self.paint(text, style) for text, style in line) for line in lines]

    def timeline(self, rows: Sequence[Row], indent: int = 0) -> list[str]:
        """Each row's time, then its text wrapped beside it: a time never wraps."""
        time_width = max((len(time) for time, _ in rows), default=0)
        text_width = max(self.width - indent - time_width - GAP, MIN_TEXT_WIDTH)
        printed = []
        for time, text in rows:
            wrapped = [line for pieces in text for line in self.wrap(pieces, text_width)]
            for number, line in enumerate(wrapped):
                left = time if number == 0 else ""
                printed.append(f"{'':{indent}}{left:{time_width}}{'':{GAP}}{line}".rstrip())
        return printed


def _words(pieces: Sequence[Piece]) -> list[tuple[str, list[Piece]]]:
    """Each word with the spaces before it, and ("\\n", []) for each newline; a word runs on
    across pieces, with each piece's style."""
    words: list[tuple[str, list[Piece]]] = []
    space, word = "", list[Piece]()
    for text, style in pieces:
        for token in _TOKENS.findall(text):
            if token == "\n" or token[0] == " ":
                if word:
                    words.append((space, word))
                    space, word = "", []
                if token == "\n":
                    words.append((token, []))
                    space = ""
                else:
                    space += token
            else:
                word.append((token, style))
    if word:
        words.append((space, word))
    return words
