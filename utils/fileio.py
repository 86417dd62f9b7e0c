"""Output files that are never left half-written, and the original `key = value` results format."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, IO, Iterator, Mapping


@contextlib.contextmanager
def atomic_open(path: os.PathLike | str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside `path` and rename it over `path` only on success.

    An interrupted run (an exception, Ctrl-C, kill -9) leaves the previous file intact.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask (mkstemp creates files 0600; outputs should get the usual permissions)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: os.PathLike | str, obj: Any, indent: int | None = 2, ensure_ascii: bool = False) -> None:
    with atomic_open(path) as handle:
        json.dump(obj, handle, indent=indent, ensure_ascii=ensure_ascii)
        handle.write("\n")


def write_key_values(path: os.PathLike | str, values: Mapping[str, Any], append: bool = False) -> None:
    """Write sorted `key = value` lines, the format of the original eval_results.txt and log.txt.

    With append, the new block follows what the file already holds (the original appended one block
    per evaluation); the whole file is still replaced atomically.
    """
    previous = ""
    if append and os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            previous = handle.read()
    with atomic_open(path) as handle:
        handle.write(previous)
        for key in sorted(values):
            handle.write(f"{key} = {values[key]}\n")


def read_key_values(path: os.PathLike | str) -> dict[str, str]:
    """Read the last value of each key from a `key = value` file."""
    result: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if " = " in line:
                key, value = line.rstrip("\n").split(" = ", 1)
                result[key] = value
    return result
