"""utils/absl_cli.py: an absl entry exits 0 after --help and 2 with one `error:` line for a flag it cannot
parse (absl's own app.run exits 1 for both)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = '''"""A toy absl entry."""
from absl import flags
from utils import absl_cli

flags.DEFINE_integer("steps", 3, "How many steps.")


def main(argv):
    print("steps", flags.FLAGS.steps)


if __name__ == "__main__":
    absl_cli.run(main)
'''


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("absl") / "toy_entry.py"
    path.write_text(PROGRAM, encoding="utf-8")
    return path


def run(program: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, str(program), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("flag", ["--help", "--helpfull", "-?"])
def test_help_exits_0(program, flag):
    result = run(program, flag)
    assert result.returncode == 0 and "--steps: How many steps." in result.stdout


def test_a_flag_that_does_not_parse_exits_2_with_one_error_line(program):
    result = run(program, "--steps=many")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: flag --steps=many: invalid literal for int() with base 10: 'many'"]
    unknown = run(program, "--stpes=4")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: Unknown command line flag 'stpes'")


def test_good_flags_reach_main(program):
    result = run(program, "--steps=7")
    assert result.returncode == 0 and result.stdout == "steps 7\n"
