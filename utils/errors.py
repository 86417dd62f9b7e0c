"""User-facing input errors.

Bad input stops a run with one line that names the file, the line or record, and what was expected,
never with a traceback: entry points wrap their main function in `exit_on_input_error`.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Optional, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class InputError(Exception):
    """A problem with what the user gave us (a file, a flag, a checkpoint), not a bug."""

    def __init__(self, message: str, path: Optional[os.PathLike | str] = None, line: Optional[int] = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


def exit_on_input_error(main: F) -> F:
    """Run `main`, turning an InputError into `error: ...` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except InputError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]


def require_file(path: os.PathLike | str, what: str) -> str:
    """Return `path` if it is a readable file, else stop with a message saying what it should be."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{what} is a directory (expected a file)", path)
    if not os.path.isfile(path):
        raise InputError(f"{what} not found (expected a file here)", path)
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} cannot be read (permission denied)", path)
    return path


def line_of(text: Optional[str], needle: str) -> Optional[int]:
    """The 1-based line of the first `needle` in `text` (a file read whole), to point a message at it."""
    if text is None:
        return None
    index = text.find(needle)
    return None if index < 0 else text.count("\n", 0, index) + 1


def first_undecodable_line(path: os.PathLike | str, encoding: str = "utf-8") -> Optional[int]:
    """The 1-based line of `path` that does not decode, for a UnicodeDecodeError raised by a text-mode reader
    (which knows only a position in its buffer)."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return number
    return None
