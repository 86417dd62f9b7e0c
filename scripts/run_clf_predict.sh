#!/usr/bin/env bash
# Predict a classification test set with a fine-tuned checkpoint (the original's run_clf_predict.sh):
#   run_clf_predict.sh TASK_NAME DATA_DIR MODEL_DIR CHECKPOINT MAX_SEQ_LENGTH PREDICT_BATCH_SIZE OUTPUT_DIR
# Positional arguments win; missing ones come from the same-named environment variables, then the defaults.
# BERT_CONFIG and VOCAB default to MODEL_DIR/bert_config.json and MODEL_DIR/vocab.txt.
# Writes OUTPUT_DIR/test_results.tsv, OUTPUT_DIR/test_predictions.tsv and, when the test set has labels,
# OUTPUT_DIR/eval/test_results.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
TASK_NAME="${1:-${TASK_NAME:-text_clf}}"
DATA_DIR="${2:-${DATA_DIR:-$ROOT/output/data/chnsenti}}"
MODEL_DIR="${3:-${MODEL_DIR:-$ROOT/NEZHA-TensorFlow/nezha}}"
OUTPUT_DIR="${7:-${OUTPUT_DIR:-$ROOT/output/$TASK_NAME}}"
INIT_CHECKPOINT="${4:-${INIT_CHECKPOINT:-$OUTPUT_DIR}}"   # a directory means its newest checkpoint
MAX_SEQ_LENGTH="${5:-${MAX_SEQ_LENGTH:-128}}"
PREDICT_BATCH_SIZE="${6:-${PREDICT_BATCH_SIZE:-32}}"
BERT_CONFIG="${BERT_CONFIG:-${BERT_CONFIG_FILE:-$MODEL_DIR/bert_config.json}}"
VOCAB="${VOCAB:-${VOCAB_FILE:-$MODEL_DIR/vocab.txt}}"

"$PYTHON" "$ROOT/NEZHA-TensorFlow/run_classifier.py" \
  --task_name="$TASK_NAME" --do_predict=true --data_dir="$DATA_DIR" \
  --vocab_file="$VOCAB" --bert_config_file="$BERT_CONFIG" --init_checkpoint="$INIT_CHECKPOINT" \
  --max_seq_length="$MAX_SEQ_LENGTH" --predict_batch_size="$PREDICT_BATCH_SIZE" --output_dir="$OUTPUT_DIR"
