"""scripts/lib.sh, which every script sources: booleans, the environment vocabulary and its aliases, errors
(one `error:` line, exit status 2), checkpoint checks, the NPROC launcher and the *_predict.sh calling
convention; and install_horovod.sh's missing-interpreter error (the other scripts are tested beside their
entries)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "scripts" / "lib.sh"

# The vocabulary: each canonical name and its older aliases, first alias first.
ALIASES = {
    "MAX_SEQ_LENGTH": ["SEQ"], "TRAIN_BATCH_SIZE": ["BATCH_SIZE", "BATCH"], "EVAL_BATCH_SIZE": ["EVAL_BATCH"],
    "LEARNING_RATE": ["LR"], "NUM_TRAIN_EPOCHS": ["EPOCHS"], "NUM_TRAIN_STEPS": ["TRAIN_STEPS"],
    "NUM_WARMUP_STEPS": ["WARMUP_STEPS"], "WARMUP_PROPORTION": ["WARMUP"], "MAX_EVAL_STEPS": ["EVAL_STEPS"],
    "SAVE_CHECKPOINTS_STEPS": ["SAVE_STEPS"], "SEED": ["RANDOM_SEED"],
    "GRADIENT_ACCUMULATION_STEPS": ["GRAD_ACCUM", "ACCUM_STEPS"], "NPROC": ["NUM_PROC"],
    "MAX_PREDICTIONS_PER_SEQ": ["MAX_PRED", "MAX_PREDICTIONS"], "DATA_DIR": ["TASK_DIR"],
    "VOCAB_FILE": ["VOCAB"], "BERT_CONFIG_FILE": ["BERT_CONFIG"], "USE_FP16": ["FP16"],
    "DO_LOWER_CASE": ["LOWER_CASE"], "DO_WHOLE_WORD_MASK": ["WHOLE_WORD_MASK"], "AUG_TRAIN": ["AUG"],
    "CONTINUE_TRAIN": ["CONTINUE"], "STAGE1_NUM_TRAIN_EPOCHS": ["STAGE1_EPOCHS"],
    "STAGE2_NUM_TRAIN_EPOCHS": ["STAGE2_EPOCHS"], "STAGE1_LEARNING_RATE": ["STAGE1_LR"],
    "STAGE2_LEARNING_RATE": ["STAGE2_LR"],
}


def bash(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` after sourcing lib.sh under the scripts' shell options, with only PATH, PYTHON and `env` set."""
    environment = {"PATH": os.environ["PATH"], "PYTHON": "python3", **env}
    return subprocess.run(["bash", "-c", f'set -euo pipefail; source "{LIB}"; {code}'], env=environment,
                          capture_output=True, text=True, timeout=60)


def assert_user_error(run: subprocess.CompletedProcess, *fragments: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("value, expected", [
    ("1", "true"), ("true", "true"), ("True", "true"), ("TRUE", "true"), ("yes", "true"), ("Yes", "true"),
    ("0", "false"), ("false", "false"), ("False", "false"), ("no", "false"), ("NO", "false"),
    ("", "false"),  # empty: unset, the default
])
def test_booleans_accept_every_spelling_the_scripts_used(value, expected):
    run = bash('bool_setting USE_XLA false; bool_setting WHOLE 1; echo "$USE_XLA $WHOLE"', USE_XLA=value)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [expected, "true"]


@pytest.mark.parametrize("value", ["maybe", "2", "on", "tru"])
def test_anything_else_is_a_clear_error_naming_the_variable_set(value):
    assert_user_error(bash("bool_setting USE_XLA false; echo unreachable", USE_XLA=value),
                      f"USE_XLA={value}: expected a boolean (1/0, true/false or yes/no)")
    assert_user_error(bash("bool_setting USE_FP16 false; echo unreachable", FP16=value), f"FP16={value}: ")


def test_the_alias_table_is_the_vocabulary():
    run = bash('for name in "${!SETTING_ALIASES[@]}"; do echo "$name=${SETTING_ALIASES[$name]}"; done')
    table = dict(line.split("=", 1) for line in run.stdout.splitlines())
    assert {name: aliases.split() for name, aliases in table.items()} == ALIASES


@pytest.mark.parametrize("canonical", sorted(ALIASES))
def test_every_old_name_sets_its_setting_and_the_new_name_wins(canonical):
    aliases = ALIASES[canonical]
    show = f'setting {canonical} default; echo "${canonical}"'
    assert bash(show).stdout.strip() == "default"
    for alias in aliases:
        assert bash(show, **{alias: f"from-{alias}"}).stdout.strip() == f"from-{alias}"
    everything = {alias: f"from-{alias}" for alias in aliases}
    assert bash(show, **everything).stdout.strip() == f"from-{aliases[0]}"        # the first alias first
    assert bash(show, **everything, **{canonical: "new"}).stdout.strip() == "new"
    assert bash(show, **{aliases[0]: ""}).stdout.strip() == "default"               # empty counts as unset


def test_a_script_may_add_its_own_former_name():
    show = 'setting PREDICT_BATCH_SIZE 32 BATCH_SIZE; echo "$PREDICT_BATCH_SIZE"'
    assert bash(show, BATCH_SIZE="8").stdout.strip() == "8"
    assert bash(show, BATCH_SIZE="8", PREDICT_BATCH_SIZE="4").stdout.strip() == "4"


def test_fail_and_the_file_checks_exit_2_with_one_error_line(tmp_path):
    assert_user_error(bash('fail "the" "words"; echo unreachable'), "error: the words")
    assert_user_error(bash(f'need_file "{tmp_path}/absent.txt" "no corpus here:" "build it"'),
                      f"error: {tmp_path}/absent.txt: no corpus here: build it")
    assert_user_error(bash(f'need_dir "{tmp_path}/absent" "no task data here"'), f"error: {tmp_path}/absent:")
    (tmp_path / "present.txt").write_text("x\n")
    assert bash(f'need_file "{tmp_path}/present.txt" x; need_dir "{tmp_path}" x; echo ok').stdout == "ok\n"


def test_checkpoint_checks_accept_a_prefix_a_directory_or_none(tmp_path):
    (tmp_path / "model.ckpt-7.index").write_bytes(b"")
    for accepted in (tmp_path / "model.ckpt-7", tmp_path, "none", "None", "NONE"):
        run = bash(f'need_checkpoint "{accepted}" "{tmp_path}"; echo ok')
        assert run.stdout == "ok\n", (accepted, run.stderr)
    assert_user_error(bash(f'need_checkpoint "{tmp_path}/model.ckpt" "/models/nezha"'),
                      f"error: {tmp_path}/model.ckpt: checkpoint not found (expected {tmp_path}/model.ckpt.index)",
                      "/models/nezha", "INIT_CHECKPOINT=none")


def test_nproc_chooses_torchrun_or_one_plain_process():
    show = 'torch_launcher; printf "%s|" "${LAUNCH[@]}"'
    assert bash(show).stdout == "python3|"
    assert bash(show, NPROC="1").stdout == "python3|"
    torchrun = "python3|-m|torch.distributed.run|--standalone|--nproc_per_node|{}|"
    assert bash(show, NPROC="4").stdout == torchrun.format(4)
    assert bash(show, NUM_PROC="2").stdout == torchrun.format(2)
    for bad in ("0", "two", "-1"):
        assert_user_error(bash(show, NPROC=bad), f"NPROC={bad}: expected a number of processes")
    assert_user_error(bash(show, NUM_PROC="x"), "NUM_PROC=x: expected a number of processes")


def test_predict_settings_positional_arguments_win_over_the_environment(tmp_path):
    (tmp_path / "model.ckpt-3.index").write_bytes(b"")
    show = ('predict_settings ner data out 256 16 -- "$@"; echo "$TASK_NAME $DATA_DIR $MODEL_DIR $INIT_CHECKPOINT '
            '$MAX_SEQ_LENGTH $PREDICT_BATCH_SIZE $OUTPUT_DIR $BERT_CONFIG_FILE $VOCAB_FILE"')

    def settings(*args: str, **env: str) -> list[str]:
        run = subprocess.run(["bash", "-c", f'set -euo pipefail; source "{LIB}"; {show}', "predict", *args],
                             env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    checkpoint = str(tmp_path / "model.ckpt-3")
    assert settings("ner2", "d", "m", checkpoint, "64", "8", "o") == [
        "ner2", "d", "m", checkpoint, "64", "8", "o", "m/bert_config.json", "m/vocab.txt"]
    # missing (or empty) positions come from the environment, then the defaults; OUTPUT_DIR is the checkpoint
    assert settings("", "", "", "", "", "", str(tmp_path), SEQ="32", BERT_CONFIG="c.json") == [
        "ner", "data", f"{ROOT}/NEZHA-TensorFlow/nezha", str(tmp_path), "32", "16", str(tmp_path), "c.json",
        f"{ROOT}/NEZHA-TensorFlow/nezha/vocab.txt"]


def test_install_horovod_stops_without_an_interpreter(tmp_path):
    run = subprocess.run(["bash", str(ROOT / "scripts" / "install_horovod.sh")], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "PYTHON": str(tmp_path / "no-python")}, timeout=60)
    assert_user_error(run, f"{tmp_path / 'no-python'}: no Python interpreter here", "make venv")
