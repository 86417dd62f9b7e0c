#!/usr/bin/env bash
# Fine-tune NEZHA for reading comprehension on CMRC2018-style JSON (the original scripts/run_reading.sh):
# train on TRAIN_FILE, predict PREDICT_FILE (OUTPUT_DIR/dev_predictions.json, dev_nbest_predictions.json) and
# score the predictions with the official CMRC2018 evaluator (OUTPUT_DIR/result_metric.txt).
#
#   bash scripts/run_reading.sh                                          # the original's settings
#   INIT_CHECKPOINT=none MAX_TRAIN_EXAMPLES=2000 MAX_SEQ_LENGTH=256 bash scripts/run_reading.sh
#
# Data: DATA_DIR/{train,dev}.json (`python utils/prepare_data.py --output_dir output/data` builds them).
# Model: MODEL_DIR/{vocab.txt,bert_config.json} and INIT_CHECKPOINT (default MODEL_DIR/model.ckpt; `none`
# trains from random weights). Every path and size below can be set in the environment. With
# MAX_PREDICT_EXAMPLES the evaluator still scores every question of PREDICT_FILE (unanswered ones count 0).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

DATA_DIR=${DATA_DIR:-$ROOT/output/data/cmrc}
TRAIN_FILE=${TRAIN_FILE:-$DATA_DIR/train.json}
PREDICT_FILE=${PREDICT_FILE:-$DATA_DIR/dev.json}
MODEL_DIR=${MODEL_DIR:-$ROOT/NEZHA-TensorFlow/nezha}
VOCAB_FILE=${VOCAB_FILE:-${VOCAB:-$MODEL_DIR/vocab.txt}}
BERT_CONFIG_FILE=${BERT_CONFIG_FILE:-${BERT_CONFIG:-$MODEL_DIR/bert_config.json}}
INIT_CHECKPOINT=${INIT_CHECKPOINT:-$MODEL_DIR/model.ckpt}
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/output/cmrc}
RESULT_FILE=${RESULT_FILE:-$OUTPUT_DIR/result_metric.txt}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-512}
DOC_STRIDE=${DOC_STRIDE:-128}
MAX_QUERY_LENGTH=${MAX_QUERY_LENGTH:-64}
BATCH_SIZE=${BATCH_SIZE:-4}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-$BATCH_SIZE}
PREDICT_BATCH_SIZE=${PREDICT_BATCH_SIZE:-8}
LEARNING_RATE=${LEARNING_RATE:-${LR:-3e-5}}
NUM_TRAIN_EPOCHS=${NUM_TRAIN_EPOCHS:-${EPOCHS:-1}}
SAVE_CHECKPOINTS_STEPS=${SAVE_CHECKPOINTS_STEPS:-${SAVE_STEPS:-1000}}
DO_LOWER_CASE=${DO_LOWER_CASE:-False}
N_BEST_SIZE=${N_BEST_SIZE:-20}
MAX_ANSWER_LENGTH=${MAX_ANSWER_LENGTH:-30}
MAX_TRAIN_EXAMPLES=${MAX_TRAIN_EXAMPLES:-0}
MAX_PREDICT_EXAMPLES=${MAX_PREDICT_EXAMPLES:-0}

fail() {
    echo "run_reading.sh: error: $*" >&2
    exit 1
}

for file in "$TRAIN_FILE" "$PREDICT_FILE"; do
    [[ -f "$file" ]] || fail "no $file: build the CMRC-style set with" \
        "'$PYTHON $ROOT/utils/prepare_data.py --output_dir $ROOT/output/data', or set DATA_DIR (or TRAIN_FILE/PREDICT_FILE)"
done
[[ -f "$VOCAB_FILE" ]] || fail "no vocabulary at $VOCAB_FILE (set MODEL_DIR or VOCAB_FILE)"
[[ -f "$BERT_CONFIG_FILE" ]] || fail "no model config at $BERT_CONFIG_FILE (set MODEL_DIR or BERT_CONFIG_FILE)"
if [[ "${INIT_CHECKPOINT,,}" != none && ! -f "$INIT_CHECKPOINT.index" ]]; then
    fail "no checkpoint at $INIT_CHECKPOINT (expected $INIT_CHECKPOINT.index and .data-* files): put the" \
        "released NEZHA model.ckpt.* files in $MODEL_DIR, set INIT_CHECKPOINT to a checkpoint prefix, or" \
        "INIT_CHECKPOINT=none to train from random weights"
fi

"$PYTHON" "$ROOT/NEZHA-TensorFlow/run_squad.py" \
    --vocab_file="$VOCAB_FILE" \
    --bert_config_file="$BERT_CONFIG_FILE" \
    --init_checkpoint="$INIT_CHECKPOINT" \
    --do_train=True \
    --train_file="$TRAIN_FILE" \
    --do_predict=True \
    --predict_file="$PREDICT_FILE" \
    --train_batch_size="$TRAIN_BATCH_SIZE" \
    --predict_batch_size="$PREDICT_BATCH_SIZE" \
    --learning_rate="$LEARNING_RATE" \
    --num_train_epochs="$NUM_TRAIN_EPOCHS" \
    --max_seq_length="$MAX_SEQ_LENGTH" \
    --doc_stride="$DOC_STRIDE" \
    --max_query_length="$MAX_QUERY_LENGTH" \
    --n_best_size="$N_BEST_SIZE" \
    --max_answer_length="$MAX_ANSWER_LENGTH" \
    --save_checkpoints_steps="$SAVE_CHECKPOINTS_STEPS" \
    --do_lower_case="$DO_LOWER_CASE" \
    --max_train_examples="$MAX_TRAIN_EXAMPLES" \
    --max_predict_examples="$MAX_PREDICT_EXAMPLES" \
    --output_dir="$OUTPUT_DIR"

"$PYTHON" "$ROOT/utils/cmrc2018_evaluate.py" "$PREDICT_FILE" "$OUTPUT_DIR/dev_predictions.json" "$RESULT_FILE"
