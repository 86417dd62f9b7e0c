"""utils/fileio.py and errors.require_file: output paths checked before any work, refused writes as clear
errors, nothing half-written under a final name and no temporary file left behind."""
from __future__ import annotations

import errno
import os
import tempfile

import pytest

from utils.errors import InputError, require_file
from utils.fileio import atomic_open, check_output_dir, check_output_file


def test_atomic_open_replaces_only_on_success(tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("previous\n", encoding="utf-8")
    with pytest.raises(ValueError):
        with atomic_open(target) as handle:
            handle.write("half")
            raise ValueError("interrupted")
    assert target.read_text(encoding="utf-8") == "previous\n"
    with atomic_open(target) as handle:
        handle.write("new\n")
    assert target.read_text(encoding="utf-8") == "new\n"
    assert os.listdir(tmp_path) == ["results.txt"]


def test_atomic_open_under_a_file_is_an_input_error_naming_the_path(tmp_path):
    parent = tmp_path / "a_file"
    parent.write_text("x", encoding="utf-8")
    with pytest.raises(InputError) as err:
        with atomic_open(parent / "out.json") as handle:
            handle.write("{}")
    assert err.value.path == str(parent / "out.json") and "cannot write this file (File exists" in err.value.message
    assert os.listdir(tmp_path) == ["a_file"]


def test_atomic_open_onto_a_directory_is_an_input_error_and_leaves_no_temporary(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match="is a directory") as err:
        with atomic_open(tmp_path / "dir") as handle:
            handle.write("data")
    assert err.value.path == str(tmp_path / "dir")
    assert os.listdir(tmp_path) == ["dir"] and os.listdir(tmp_path / "dir") == []


def _no_space(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_open_on_a_full_disk_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "model.ckpt.index"
    target.write_bytes(b"old")
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(InputError) as err:
        with atomic_open(target, "wb") as handle:
            handle.write(b"new")
    assert str(err.value) == f"{target}: cannot write this file (No space left on device)"
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.ckpt.index"]


def test_atomic_open_without_permission(tmp_path, monkeypatch):
    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(InputError) as err:
        with atomic_open(tmp_path / "out.txt") as handle:
            handle.write("x")
    assert str(err.value) == f"{tmp_path / 'out.txt'}: cannot write this file (Permission denied: {tmp_path})"
    assert os.listdir(tmp_path) == []


def test_atomic_open_passes_the_callers_own_errors_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_open(tmp_path / "out.txt") as handle:
            handle.write(open(tmp_path / "missing_input.txt").read())
    assert os.listdir(tmp_path) == []


def test_check_output_dir_creates_and_probes(tmp_path):
    assert check_output_dir(tmp_path / "a" / "b") == str(tmp_path / "a" / "b")
    assert os.listdir(tmp_path / "a" / "b") == []                      # the probe is gone


def test_check_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("x", encoding="utf-8")
    with pytest.raises(InputError) as err:
        check_output_dir(tmp_path / "out", "--output_dir")
    assert str(err.value) == f"{tmp_path / 'out'}: --output_dir is a file (expected a directory)"
    with pytest.raises(InputError, match="cannot be created or written .Not a directory"):
        check_output_dir(tmp_path / "out" / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any directory")
def test_check_output_dir_that_is_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match="cannot be created or written .Permission denied"):
            check_output_dir(locked)
    finally:
        locked.chmod(0o700)


def test_check_output_dir_on_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(InputError) as err:
        check_output_dir(tmp_path)
    assert str(err.value) == f"{tmp_path}: output directory cannot be written (No space left on device)"
    assert os.listdir(tmp_path) == []


def test_check_output_file(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="--output_file is a directory"):
        check_output_file(tmp_path / "d", "--output_file")
    assert check_output_file(tmp_path / "new" / "x.tfrecord") == str(tmp_path / "new" / "x.tfrecord")
    assert os.listdir(tmp_path / "new") == []


def test_require_file_says_what_is_wrong(tmp_path):
    with pytest.raises(InputError) as err:
        require_file(tmp_path, "--input_file")
    assert str(err.value) == f"{tmp_path}: --input_file is a directory (expected a file)"
    with pytest.raises(InputError, match="--input_file not found .expected a file here."):
        require_file(tmp_path / "absent.txt", "--input_file")
    (tmp_path / "ok.txt").write_text("x", encoding="utf-8")
    assert require_file(tmp_path / "ok.txt", "--input_file") == str(tmp_path / "ok.txt")
