"""Output files that are never left half-written, and the original `key = value` results format."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, IO, Iterator, Mapping

from utils.errors import InputError

_PROBE_BYTES = 4096       # one block: a full disk refuses it, an empty file would still be created


@contextlib.contextmanager
def atomic_open(path: os.PathLike | str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside `path` and rename it over `path` only on success.

    An interrupted run (an exception, Ctrl-C, kill -9) leaves the previous file intact. A write that the
    system refuses (no space, no permission, `path` a directory, a parent that is a file) stops with an
    InputError naming `path`, and the temporary file is removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    binary = "b" in mode
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        # An OSError without a file name comes from writing our handle; one naming another file is the
        # caller's (reading an input inside the block) and passes unchanged.
        if isinstance(err, OSError) and err.filename in (None, path, tmp):
            raise _write_error(path, err) from None
        raise


def _write_error(path: str, err: OSError) -> InputError:
    if os.path.isdir(path):
        return InputError("is a directory (expected the name of a file to write)", path)
    return InputError(f"cannot write this file ({_reason(err)})", path)


def _reason(err: OSError) -> str:
    """strerror, with the path the system names when it is not the one the message is about."""
    reason = err.strerror or str(err)
    return f"{reason}: {err.filename}" if err.filename else reason


def check_output_dir(path: os.PathLike | str, what: str = "output directory") -> str:
    """Create `path` if needed and prove, before any work, that files can be written there.

    A probe file is written, synced and removed, so that a read-only file system, a full disk or a missing
    permission stops the run at once with the reason, instead of after hours when the first checkpoint is
    saved. Returns `path`.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{what} is a file (expected a directory)", path)
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
    except OSError as err:
        raise InputError(f"{what} cannot be created or written ({_reason(err)})", path) from None
    try:
        os.write(fd, b"\0" * _PROBE_BYTES)
        os.fsync(fd)
    except OSError as err:
        raise InputError(f"{what} cannot be written ({err.strerror or err})", path) from None
    finally:
        os.close(fd)
        os.unlink(probe)
    return path


def check_output_file(path: os.PathLike | str, what: str = "output file") -> str:
    """`check_output_dir` for the directory of an output file, and `path` not a directory itself."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{what} is a directory (expected the name of a file to write)", path)
    check_output_dir(os.path.dirname(os.path.abspath(path)), f"directory of the {what}")
    return path


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
