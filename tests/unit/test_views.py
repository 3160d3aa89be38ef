"""The query commands' layout without rich: lines that fit the width, words kept whole where
they fit, and colour only where asked for."""

from __future__ import annotations

from privtrail.views import Screen

TIME = "2025-03-01 13:00:00"


def test_lines_break_at_spaces_and_a_word_runs_on_across_styles() -> None:
    screen = Screen(20, color=False)

    lines = screen.wrap([("shared by", ""), (" partner-sync", "dim"), (", basis consent", "")])

    assert lines == ["shared by", "partner-sync, basis", "consent"]


def test_a_word_longer_than_the_line_is_folded_not_cut() -> None:
    word = "talentbrokers-international-recruitment-analytics"

    lines = Screen(20, color=False).wrap([(f"to {word}", "")])

    assert lines == ["to", word[:20], word[20:40], word[40:]]


def test_a_timeline_wraps_its_text_beside_the_time() -> None:
    screen = Screen(50, color=False)
    text = [[("one two three four five six seven", "")], [("eight", "dim")]]

    lines = screen.timeline([(TIME, text)], 2)

    assert lines == [f"  {TIME}  one two three four five six", f"{'':23}seven", f"{'':23}eight"]
    assert max(len(line) for line in lines) <= 50


def test_colour_only_on_a_colour_screen() -> None:
    pieces = [("XA-SALE-002", "bold red"), (" critical", "")]

    assert Screen(80, color=False).wrap(pieces) == ["XA-SALE-002 critical"]
    assert Screen(80, color=True).wrap(pieces) == ["\x1b[1;31mXA-SALE-002\x1b[0m critical"]
