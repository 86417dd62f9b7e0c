"""Output files that are never left half-written, and the original `key = value` results format."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, IO, Iterator, Mapping

from utils.errors import InputError


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


def read_key_value_blocks(path: os.PathLike | str) -> list[dict[str, str]]:
    """Every block of a file that write_key_values appended to (log.txt, eval_results.txt): a block ends
    where a key it already holds comes again."""
    blocks: list[dict[str, str]] = [{}]
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if " = " not in line:
                continue
            key, value = line.rstrip("\n").split(" = ", 1)
            if key in blocks[-1]:
                blocks.append({})
            blocks[-1][key] = value
    return [block for block in blocks if block]


def read_json_lines(path: os.PathLike | str) -> list[tuple[int, Any]]:
    """(line number, object) of each non-blank line of a JSON-lines file; a bad line is an InputError."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    records.append((number, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise InputError(f"expected one JSON value per line ({err.msg})", path, number) from None
    return records
