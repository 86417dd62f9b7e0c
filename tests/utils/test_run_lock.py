"""utils/run_lock.py with real processes: one run per output directory, a dead holder's lock taken over."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from utils.errors import InputError
from utils.run_lock import LOCK_NAME, RunLock, _process_identity, hold_output_dir

WORKER = Path(__file__).with_name("run_worker.py")


def start_holder(output_dir: Path) -> subprocess.Popen:
    """A process holding output_dir's lock until its stdin closes."""
    proc = subprocess.Popen([sys.executable, str(WORKER), "hold", str(output_dir), "wait"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "locked\n", proc.stderr.read()
    return proc


def run_hold(output_dir: Path, then: str = "return") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WORKER), "hold", str(output_dir), then], capture_output=True,
                          text=True, timeout=120)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_second_run_is_refused_with_exit_2_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    holder = start_holder(out)
    try:
        second = run_hold(out)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        [line] = error_lines(second.stderr)
        assert line.startswith(f"error: {out}: output directory is in use by another run (host "
                               f"{socket.gethostname()}, pid {holder.pid}, since ")
        assert "locked" not in second.stdout
        recorded = json.loads((out / LOCK_NAME).read_text(encoding="utf-8"))
        assert recorded["pid"] == holder.pid and recorded["since"] in line
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    assert not (out / LOCK_NAME).exists()
    assert sorted(os.listdir(out)) == []                      # no staging file left either


def test_the_lock_of_a_killed_holder_is_taken_over_with_a_warning(tmp_path):
    out = tmp_path / "out"
    holder = start_holder(out)
    holder.kill()
    holder.wait(timeout=60)
    assert (out / LOCK_NAME).exists()                          # kill -9: nothing could clean up
    after = run_hold(out)
    assert after.returncode == 0, after.stderr
    assert after.stdout == "locked\n"
    [warning] = [line for line in after.stderr.splitlines() if line.startswith("warning:")]
    assert f"taking over the lock of a run that is gone (host {socket.gethostname()}, pid {holder.pid}," in warning
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("then, status", [("return", 0), ("raise", 1)])
def test_the_lock_is_removed_after_a_clean_exit_and_after_an_exception(tmp_path, then, status):
    out = tmp_path / "out"
    run = run_hold(out, then)
    assert run.returncode == status and run.stdout == "locked\n"
    assert ("ValueError: a bug inside the run" in run.stderr) == (then == "raise")
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_lock_is_removed_after_sigterm_and_sigint(tmp_path, signum, status):
    out = tmp_path / "out"
    holder = start_holder(out)
    holder.send_signal(signum)
    assert holder.wait(timeout=60) == status
    stderr = holder.stderr.read()
    assert "Traceback" not in stderr and f"interrupted by {signal.Signals(signum).name}" in stderr
    assert not (out / LOCK_NAME).exists()


def test_concurrent_starts_into_one_directory_let_exactly_one_run(tmp_path):
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, str(WORKER), "hold", str(out), "wait"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    # A refused process exits by itself; the winner waits for its stdin, so all of them overlap.
    first_lines = [proc.stdout.readline() for proc in procs]
    winners = [proc for proc, line in zip(procs, first_lines) if line == "locked\n"]
    for proc in procs:
        proc.stdin.close()
    statuses = [proc.wait(timeout=60) for proc in procs]
    assert len(winners) == 1
    assert sorted(statuses) == [0, 2, 2, 2]
    assert not (out / LOCK_NAME).exists()


def _write_lock(out: Path, **fields) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {"host": socket.gethostname(), "pid": os.getpid(), "identity": None, "since": "2026-01-01 00:00:00",
              "command": "python earlier_run.py"}
    record.update(fields)
    (out / LOCK_NAME).write_text(json.dumps(record) + "\n", encoding="utf-8")


@pytest.mark.skipif(_process_identity(os.getpid()) is None, reason="needs /proc (Linux)")
def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path, capsys):
    # The recorded pid runs (it is this very process), but it is another process than the one recorded.
    _write_lock(tmp_path, identity="another-boot:12345")
    with hold_output_dir(tmp_path) as path:
        assert json.loads(Path(path).read_text(encoding="utf-8"))["identity"] != "another-boot:12345"
    assert "taking over the lock of a run that is gone" in capsys.readouterr().err
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_from_another_host_is_refused_and_names_the_file_to_delete(tmp_path):
    _write_lock(tmp_path, host="elsewhere.example", pid=4242)
    with pytest.raises(InputError) as err:
        RunLock(tmp_path).acquire()
    assert err.value.path == str(tmp_path)
    assert "(host elsewhere.example, pid 4242, since 2026-01-01 00:00:00: python earlier_run.py)" in err.value.message
    assert f"if that run is over, delete {tmp_path / LOCK_NAME}" in err.value.message
    assert (tmp_path / LOCK_NAME).exists()                     # someone else's lock is never removed


def test_a_lock_file_that_names_no_holder_is_reported(tmp_path):
    (tmp_path / LOCK_NAME).write_text("garbage", encoding="utf-8")
    with pytest.raises(InputError, match="the lock file does not name its holder; if no run is using this"):
        RunLock(tmp_path).acquire()


def test_only_the_owner_takes_the_lock(tmp_path):
    with hold_output_dir(tmp_path / "out", owner=False) as path:
        assert path is None
        assert not (tmp_path / "out").exists()
    with hold_output_dir(tmp_path / "out") as path:
        assert path == str(tmp_path / "out" / LOCK_NAME) and os.path.exists(path)
        with pytest.raises(InputError, match="in use by another run"):
            RunLock(tmp_path / "out").acquire()                # in-process: a nested run is refused too
    assert os.listdir(tmp_path / "out") == []


def test_a_lock_replaced_by_its_new_owner_is_not_removed_on_release(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    _write_lock(tmp_path, pid=99999999)                        # taken over by another run meanwhile
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text(encoding="utf-8"))["pid"] == 99999999
