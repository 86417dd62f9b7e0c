#!/usr/bin/env bash
# Fine-tune NEZHA on People's Daily NER (the original scripts/run_seq_labelling.sh): train, evaluate every
# saved checkpoint on dev, pick the best one by entity F1 (select_best.py, which replaces read_tf_events.py)
# and label the test set with it (run_seq_labelling_predict.sh).
#
#   bash scripts/run_seq_labelling.sh                                   # the original's settings
#   INIT_CHECKPOINT=none MAX_TRAIN_EXAMPLES=2000 NUM_TRAIN_EPOCHS=1 bash scripts/run_seq_labelling.sh
#
# Data: DATA_DIR/{train,dev,test}.txt (`python utils/prepare_data.py --output_dir output/data` builds them).
# Model: MODEL_DIR/{vocab.txt,bert_config.json} and INIT_CHECKPOINT (default MODEL_DIR/model.ckpt; `none`
# trains from random weights). Every path and size below can be set in the environment.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

TASK_NAME=${TASK_NAME:-ner}
DATA_DIR=${DATA_DIR:-$ROOT/output/data/peoples_daily_ner}
MODEL_DIR=${MODEL_DIR:-$ROOT/NEZHA-TensorFlow/nezha}
VOCAB_FILE=${VOCAB_FILE:-$MODEL_DIR/vocab.txt}
BERT_CONFIG_FILE=${BERT_CONFIG_FILE:-$MODEL_DIR/bert_config.json}
INIT_CHECKPOINT=${INIT_CHECKPOINT:-$MODEL_DIR/model.ckpt}
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/output/peoples-daily-ner}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-256}
BATCH_SIZE=${BATCH_SIZE:-16}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-$BATCH_SIZE}
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-$BATCH_SIZE}
PREDICT_BATCH_SIZE=${PREDICT_BATCH_SIZE:-$BATCH_SIZE}
NUM_TRAIN_EPOCHS=${NUM_TRAIN_EPOCHS:-${EPOCHS:-10}}
SAVE_CHECKPOINTS_STEPS=${SAVE_CHECKPOINTS_STEPS:-${SAVE_STEPS:-100}}
LEARNING_RATE=${LEARNING_RATE:-3e-5}
WINDOW_STRIDE=${WINDOW_STRIDE:-128}
MAX_TRAIN_EXAMPLES=${MAX_TRAIN_EXAMPLES:-0}
MAX_EVAL_EXAMPLES=${MAX_EVAL_EXAMPLES:-0}
MAX_PREDICT_EXAMPLES=${MAX_PREDICT_EXAMPLES:-0}

fail() {
    echo "run_seq_labelling.sh: error: $*" >&2
    exit 1
}

for split in train dev test; do
    [[ -f "$DATA_DIR/$split.txt" ]] || fail "no $DATA_DIR/$split.txt: build the People's Daily NER set with" \
        "'$PYTHON $ROOT/utils/prepare_data.py --output_dir $ROOT/output/data', or set DATA_DIR"
done
[[ -f "$VOCAB_FILE" ]] || fail "no vocabulary at $VOCAB_FILE (set MODEL_DIR or VOCAB_FILE)"
[[ -f "$BERT_CONFIG_FILE" ]] || fail "no model config at $BERT_CONFIG_FILE (set MODEL_DIR or BERT_CONFIG_FILE)"
if [[ "${INIT_CHECKPOINT,,}" != none && ! -f "$INIT_CHECKPOINT.index" ]]; then
    fail "no checkpoint at $INIT_CHECKPOINT (expected $INIT_CHECKPOINT.index and .data-* files): put the" \
        "released NEZHA model.ckpt.* files in $MODEL_DIR, set INIT_CHECKPOINT to a checkpoint prefix, or" \
        "INIT_CHECKPOINT=none to train from random weights"
fi

"$PYTHON" "$ROOT/NEZHA-TensorFlow/run_classifier_ner.py" \
    --task_name="$TASK_NAME" \
    --do_train=true \
    --do_eval=true \
    --do_train_and_eval=true \
    --data_dir="$DATA_DIR" \
    --save_checkpoints_steps="$SAVE_CHECKPOINTS_STEPS" \
    --vocab_file="$VOCAB_FILE" \
    --bert_config_file="$BERT_CONFIG_FILE" \
    --init_checkpoint="$INIT_CHECKPOINT" \
    --max_seq_length="$MAX_SEQ_LENGTH" \
    --train_batch_size="$TRAIN_BATCH_SIZE" \
    --eval_batch_size="$EVAL_BATCH_SIZE" \
    --num_train_epochs="$NUM_TRAIN_EPOCHS" \
    --learning_rate="$LEARNING_RATE" \
    --window_stride="$WINDOW_STRIDE" \
    --max_train_examples="$MAX_TRAIN_EXAMPLES" \
    --max_eval_examples="$MAX_EVAL_EXAMPLES" \
    --output_dir="$OUTPUT_DIR"

BEST_CHECKPOINT=$("$PYTHON" "$ROOT/NEZHA-TensorFlow/select_best.py" --task_name="$TASK_NAME" \
    --task_output_dir="$OUTPUT_DIR")
echo "best checkpoint on dev (entity F1): $BEST_CHECKPOINT"

MAX_PREDICT_EXAMPLES="$MAX_PREDICT_EXAMPLES" WINDOW_STRIDE="$WINDOW_STRIDE" PYTHON="$PYTHON" \
    VOCAB_FILE="$VOCAB_FILE" BERT_CONFIG_FILE="$BERT_CONFIG_FILE" \
    bash "$ROOT/scripts/run_seq_labelling_predict.sh" "$TASK_NAME" "$DATA_DIR" "$MODEL_DIR" \
    "$BEST_CHECKPOINT" "$MAX_SEQ_LENGTH" "$PREDICT_BATCH_SIZE" "$OUTPUT_DIR"
