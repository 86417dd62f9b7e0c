"""utils/progress.py: one progress-bar setting for long conversions: items/s in the given unit on a terminal,
nothing on other ranks or when stderr is not a terminal."""
from __future__ import annotations

import io
import sys

import pytest

from utils.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("is_terminal, enabled, drawn", [(True, True, True), (True, False, False),
                                                          (False, True, False)])
def test_the_bar_shows_items_per_second_only_on_rank_0_at_a_terminal(monkeypatch, is_terminal, enabled, drawn):
    stderr = Terminal() if is_terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    items = list(progress_bar(range(5), desc="NER windows", unit="sentences", enabled=enabled))
    assert items == [0, 1, 2, 3, 4]
    text = stderr.getvalue()
    if drawn:
        assert "NER windows: 100%" in text and "5/5" in text and " sentences/s]" in text
    else:
        assert text == ""
