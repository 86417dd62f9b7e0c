#!/usr/bin/env bash
# Fine-tune NEZHA on a classification task (the original's run_clf.sh), evaluating every checkpoint on dev,
# then pick the best checkpoint and predict the test set with it (select_best.py -> run_clf_predict.sh).
#
#   TASK_NAME=lcqmc DATA_DIR=data/lcqmc scripts/run_clf.sh
#   INIT_CHECKPOINT=none BERT_CONFIG_FILE=NEZHA-TensorFlow/nezha/bert_config_tiny.json MAX_TRAIN_EXAMPLES=2000 \
#     NUM_TRAIN_EPOCHS=1 scripts/run_clf.sh
#
# Settings (environment variables; defaults below, older names in scripts/lib.sh): TASK_NAME (text_clf for
# ChnSenti, lcqmc, xnli or a GLUE task), DATA_DIR (default: the ChnSenti set built by `python
# utils/prepare_data.py --output_dir output/data`), MODEL_DIR, BERT_CONFIG_FILE, VOCAB_FILE, INIT_CHECKPOINT
# (default: the released NEZHA-base in NEZHA-TensorFlow/nezha/, model.ckpt.index + model.ckpt.data-*; `none`
# trains from scratch), OUTPUT_DIR, MAX_SEQ_LENGTH, TRAIN_BATCH_SIZE, EVAL_BATCH_SIZE, PREDICT_BATCH_SIZE,
# NUM_TRAIN_EPOCHS, LEARNING_RATE, SAVE_CHECKPOINTS_STEPS, MAX_TRAIN_EXAMPLES, MAX_EVAL_EXAMPLES (0: all),
# PYTHON. Extra arguments are passed on to run_classifier.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setting TASK_NAME text_clf
setting DATA_DIR "$ROOT/output/data/chnsenti"
model_settings
setting INIT_CHECKPOINT "$MODEL_DIR/model.ckpt"
setting OUTPUT_DIR "$ROOT/output/$TASK_NAME"
setting MAX_SEQ_LENGTH 128
setting TRAIN_BATCH_SIZE 32
setting EVAL_BATCH_SIZE 32
setting PREDICT_BATCH_SIZE 32
setting NUM_TRAIN_EPOCHS 5
setting LEARNING_RATE 3e-5
setting SAVE_CHECKPOINTS_STEPS 50
setting MAX_TRAIN_EXAMPLES 0
setting MAX_EVAL_EXAMPLES 0
export PYTHON BERT_CONFIG_FILE VOCAB_FILE     # run_clf_predict.sh, started by select_best.py, uses them

need_dir "$DATA_DIR" "no task data here (for ChnSenti run: $PYTHON $ROOT/utils/prepare_data.py --output_dir" \
    "$ROOT/output/data; or set DATA_DIR)"
need_checkpoint "$INIT_CHECKPOINT" "$MODEL_DIR"

finetune_and_select run_classifier.py "$@"
