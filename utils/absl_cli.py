"""absl entry points with the project's exit convention.

absl's `app.run` exits 1 both after printing --help and for a flag it cannot parse (`FATAL Flags parsing
error`); the convention of every entry here is 0 for help and 2 with one `error: ...` line for bad input.
`run(main)` is `app.run(main)` with that convention.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

from absl import app, flags


def _parse_flags(argv: Sequence[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except SystemExit as done:
        # absl's --help, --helpshort, --helpfull and --helpxml print the usage and exit 1.
        raise SystemExit(0 if done.code == 1 else done.code) from None


def run(main: Callable[[list[str]], Any]) -> None:
    app.run(main, flags_parser=_parse_flags)
