"""Progress bars for conversions and loops that take more than a few seconds, with one set of settings."""
from __future__ import annotations

import sys
from typing import Any, Iterable, Optional

from tqdm import tqdm


def progress_bar(iterable: Optional[Iterable] = None, *, desc: str, unit: str, total: Optional[int] = None,
                 enabled: bool = True, **options: Any) -> tqdm:
    """tqdm on stderr counting `unit`s (items/s in the rate). Off where `enabled` is False (pass False on
    ranks other than 0, so that N processes do not draw N bars) and, by tqdm's own rule, where stderr is not
    a terminal, so logs and captured test output get no carriage-return noise."""
    return tqdm(iterable, desc=desc, unit=" " + unit.strip(), total=total, disable=None if enabled else True,
                file=sys.stderr, dynamic_ncols=True, mininterval=1.0, **options)
