#!/usr/bin/env bash
# Fine-tune NEZHA on People's Daily NER (the original's run_seq_labelling.sh): train, evaluate every saved
# checkpoint on dev, then pick the best checkpoint by entity F1 and label the test set with it
# (select_best.py, which replaces read_tf_events.py, runs run_seq_labelling_predict.sh).
#
# Every setting is an environment variable; extra arguments are passed on to run_classifier_ner.py. Default:
# the set built by `python utils/prepare_data.py --output_dir output/data` and the released NEZHA-base in
# NEZHA-TensorFlow/nezha/ (model.ckpt.index + model.ckpt.data-*). INIT_CHECKPOINT=none trains from scratch.
#   scripts/run_seq_labelling.sh
#   INIT_CHECKPOINT=none BERT_CONFIG=NEZHA-TensorFlow/nezha/bert_config_tiny.json MAX_SEQ_LENGTH=128 \
#     MAX_TRAIN_EXAMPLES=2000 EPOCHS=1 LR=1e-3 scripts/run_seq_labelling.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
TASK_NAME="${TASK_NAME:-ner}"
DATA_DIR="${DATA_DIR:-$ROOT/output/data/peoples_daily_ner}"
MODEL_DIR="${MODEL_DIR:-$ROOT/NEZHA-TensorFlow/nezha}"
BERT_CONFIG="${BERT_CONFIG:-${BERT_CONFIG_FILE:-$MODEL_DIR/bert_config.json}}"
VOCAB="${VOCAB:-${VOCAB_FILE:-$MODEL_DIR/vocab.txt}}"
INIT_CHECKPOINT="${INIT_CHECKPOINT:-$MODEL_DIR/model.ckpt}"
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/output/peoples-daily-ner}"
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-256}"
TRAIN_BATCH_SIZE="${TRAIN_BATCH_SIZE:-16}"
EVAL_BATCH_SIZE="${EVAL_BATCH_SIZE:-16}"
PREDICT_BATCH_SIZE="${PREDICT_BATCH_SIZE:-16}"
EPOCHS="${EPOCHS:-${NUM_TRAIN_EPOCHS:-10}}"
LR="${LR:-${LEARNING_RATE:-3e-5}}"
SAVE_STEPS="${SAVE_STEPS:-100}"
WINDOW_STRIDE="${WINDOW_STRIDE:-128}"              # tokens between windows of a sentence too long for one
MAX_TRAIN_EXAMPLES="${MAX_TRAIN_EXAMPLES:-0}"      # 0: all
MAX_EVAL_EXAMPLES="${MAX_EVAL_EXAMPLES:-0}"        # 0: all
MAX_PREDICT_EXAMPLES="${MAX_PREDICT_EXAMPLES:-0}"  # 0: all
# run_seq_labelling_predict.sh, started by select_best.py, uses these
export PYTHON BERT_CONFIG VOCAB WINDOW_STRIDE MAX_PREDICT_EXAMPLES

if [[ ! -f "$DATA_DIR/train.txt" ]]; then
  echo "error: $DATA_DIR/train.txt: no NER data here (for People's Daily run: $PYTHON" \
       "$ROOT/utils/prepare_data.py --output_dir $ROOT/output/data; or set DATA_DIR)" >&2
  exit 2
fi
if [[ "${INIT_CHECKPOINT,,}" != "none" && ! -e "$INIT_CHECKPOINT.index" && ! -d "$INIT_CHECKPOINT" ]]; then
  echo "error: $INIT_CHECKPOINT: checkpoint not found (expected $INIT_CHECKPOINT.index). Put the released" \
       "NEZHA files (model.ckpt.index, model.ckpt.data-00000-of-00001) in $MODEL_DIR, set INIT_CHECKPOINT," \
       "or set INIT_CHECKPOINT=none to train from random weights" >&2
  exit 2
fi

"$PYTHON" "$ROOT/NEZHA-TensorFlow/run_classifier_ner.py" \
  --task_name="$TASK_NAME" --do_train=true --do_eval=true --do_train_and_eval=true \
  --data_dir="$DATA_DIR" --save_checkpoints_steps="$SAVE_STEPS" \
  --vocab_file="$VOCAB" --bert_config_file="$BERT_CONFIG" --init_checkpoint="$INIT_CHECKPOINT" \
  --max_seq_length="$MAX_SEQ_LENGTH" --train_batch_size="$TRAIN_BATCH_SIZE" \
  --eval_batch_size="$EVAL_BATCH_SIZE" --num_train_epochs="$EPOCHS" --learning_rate="$LR" \
  --window_stride="$WINDOW_STRIDE" --max_train_examples="$MAX_TRAIN_EXAMPLES" \
  --max_eval_examples="$MAX_EVAL_EXAMPLES" --output_dir="$OUTPUT_DIR" "$@"

"$PYTHON" "$ROOT/NEZHA-TensorFlow/select_best.py" \
  --task_name="$TASK_NAME" --task_data_dir="$DATA_DIR" --max_seq_length="$MAX_SEQ_LENGTH" \
  --predict_batch_size="$PREDICT_BATCH_SIZE" --pretrained_model_dir="$MODEL_DIR" --task_output_dir="$OUTPUT_DIR" \
  --metric=eval_entity_f1
