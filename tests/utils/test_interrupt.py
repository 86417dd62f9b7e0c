"""utils/interrupt.py with real signals sent to a child running a resumable toy training loop."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from utils.interrupt import Interrupted, StopOnSignal
from utils.run_lock import LOCK_NAME

WORKER = Path(__file__).with_name("run_worker.py")
sys.path.insert(0, str(WORKER.parent))
from run_worker import STATE, step_value  # noqa: E402

STEPS = 8


def expected_value(steps: int) -> int:
    value = 1
    for step in range(steps):
        value = step_value(value, step)
    return value


def start_training(output_dir: Path, step_seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), "train", str(output_dir), str(STEPS), str(step_seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(proc: subprocess.Popen, wanted: str) -> list[str]:
    lines = []
    while True:
        line = proc.stdout.readline()
        assert line, f"the worker ended before {wanted!r}: {proc.stderr.read()}"
        lines.append(line.rstrip("\n"))
        if lines[-1] == wanted:
            return lines


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_first_signal_finishes_the_step_saves_and_the_rerun_resumes_exactly(tmp_path, signum, status):
    out = tmp_path / "out"
    proc = start_training(out, step_seconds=0.3)
    read_until(proc, "in step 2")
    proc.send_signal(signum)
    rest, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status
    assert "Traceback" not in stderr
    name = signal.Signals(signum).name
    assert f"received {name}: finishing the current step, then saving a checkpoint" in stderr
    assert f"stopped by {name}; run the same command again to resume" in stderr
    # The step in flight when the signal came (step 2, or a later one on a slow machine) was completed.
    saved = json.loads((out / STATE).read_text(encoding="utf-8"))
    assert 3 <= saved["step"] < STEPS and rest.splitlines()[-1] == f"done step {saved['step']}"
    assert saved["value"] == expected_value(saved["step"])
    assert not (out / LOCK_NAME).exists()

    rerun = subprocess.run([sys.executable, str(WORKER), "train", str(out), str(STEPS), "0"], capture_output=True,
                           text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.splitlines()[0] == f"start {saved['step']}"
    assert rerun.stdout.splitlines()[-1] == f"finished {expected_value(STEPS)}"


def test_a_second_signal_stops_at_once_without_saving(tmp_path):
    out = tmp_path / "out"
    proc = start_training(out, step_seconds=600)               # a step that would outlast the test
    read_until(proc, "in step 0")
    proc.send_signal(signal.SIGINT)
    assert proc.stderr.readline().startswith("received SIGINT: finishing the current step")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert "Traceback" not in stderr and "SIGTERM again: stopping at once, without saving" in stderr
    assert not (out / STATE).exists()
    assert not (out / LOCK_NAME).exists()                      # finally blocks still ran


def test_without_a_signal_nothing_is_requested_and_handlers_are_restored():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopOnSignal() as stop:
        assert not stop.requested
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
        with pytest.raises(RuntimeError):
            stop.exit()
    assert {s: signal.getsignal(s) for s in before} == before


def test_interrupted_is_a_system_exit_with_the_shell_status():
    assert isinstance(Interrupted(signal.SIGTERM), SystemExit)
    assert Interrupted(signal.SIGTERM).code == 143 and Interrupted(signal.SIGINT).code == 130
