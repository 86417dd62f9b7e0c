"""A toy entry point for the lock and signal tests: real processes, as a user's runs are.

    python run_worker.py hold OUTPUT_DIR [raise|return]
        take OUTPUT_DIR's lock, print "locked", then wait for stdin to close (or raise / return at once)
    python run_worker.py train OUTPUT_DIR STEPS STEP_SECONDS
        a resumable toy training loop under the lock and StopOnSignal: state.json holds the step and a value
        that depends on every step before, so a resume that skips or repeats a step gives another value

Both are wrapped as an entry point is (exit_on_input_error), so a refused lock exits 2 with `error: ...`.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from utils.errors import exit_on_input_error  # noqa: E402
from utils.fileio import write_json  # noqa: E402
from utils.interrupt import StopOnSignal  # noqa: E402
from utils.run_lock import hold_output_dir  # noqa: E402

STATE = "state.json"


def step_value(value: int, step: int) -> int:
    return (value * 31 + step * step + 7) % 1_000_003


def hold(output_dir: str, then: str) -> None:
    with hold_output_dir(output_dir):
        print("locked", flush=True)
        if then == "raise":
            raise ValueError("a bug inside the run")
        if then == "wait":
            sys.stdin.read()


def train(output_dir: str, steps: int, step_seconds: float) -> None:
    state_path = os.path.join(output_dir, STATE)
    with hold_output_dir(output_dir), StopOnSignal() as stop:
        state = {"step": 0, "value": 1}
        if os.path.exists(state_path):
            with open(state_path, encoding="utf-8") as handle:
                state = json.load(handle)
        print(f"start {state['step']}", flush=True)
        while state["step"] < steps:
            print(f"in step {state['step']}", flush=True)
            time.sleep(step_seconds)
            state = {"step": state["step"] + 1, "value": step_value(state["value"], state["step"])}
            print(f"done step {state['step']}", flush=True)
            if stop.requested:
                write_json(state_path, state)
                stop.exit()
        write_json(state_path, state)
        print(f"finished {state['value']}", flush=True)


@exit_on_input_error
def main(argv: list[str]) -> None:
    if argv[0] == "hold":
        hold(argv[1], argv[2] if len(argv) > 2 else "wait")
    else:
        train(argv[1], int(argv[2]), float(argv[3]))


if __name__ == "__main__":
    main(sys.argv[1:])
