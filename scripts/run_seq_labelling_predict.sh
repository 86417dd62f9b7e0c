#!/usr/bin/env bash
# Label the test set with a fine-tuned NER checkpoint (the original scripts/run_seq_labelling_predict.sh).
#
#   bash scripts/run_seq_labelling_predict.sh TASK_NAME DATA_DIR MODEL_DIR CHECKPOINT MAX_SEQ_LENGTH \
#       PREDICT_BATCH_SIZE OUTPUT_DIR
#
# Positional arguments as the original; each one left out comes from the environment variable of that name
# (INIT_CHECKPOINT for CHECKPOINT), else from the defaults below. MODEL_DIR holds vocab.txt and
# bert_config.json. Writes OUTPUT_DIR/test_predictions.txt (`char gold pred`), token_test.txt and
# eval/test_results.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

TASK_NAME=${1:-${TASK_NAME:-ner}}
DATA_DIR=${2:-${DATA_DIR:-$ROOT/output/data/peoples_daily_ner}}
MODEL_DIR=${3:-${MODEL_DIR:-$ROOT/NEZHA-TensorFlow/nezha}}
INIT_CHECKPOINT=${4:-${INIT_CHECKPOINT:-}}
MAX_SEQ_LENGTH=${5:-${MAX_SEQ_LENGTH:-256}}
PREDICT_BATCH_SIZE=${6:-${PREDICT_BATCH_SIZE:-16}}
OUTPUT_DIR=${7:-${OUTPUT_DIR:-$ROOT/output/peoples-daily-ner}}
VOCAB_FILE=${VOCAB_FILE:-$MODEL_DIR/vocab.txt}
BERT_CONFIG_FILE=${BERT_CONFIG_FILE:-$MODEL_DIR/bert_config.json}
WINDOW_STRIDE=${WINDOW_STRIDE:-128}
MAX_PREDICT_EXAMPLES=${MAX_PREDICT_EXAMPLES:-0}

if [[ -z "$INIT_CHECKPOINT" ]]; then
    echo "run_seq_labelling_predict.sh: error: no checkpoint: pass a fine-tuned OUTPUT_DIR/model.ckpt-N as the" \
        "4th argument or set INIT_CHECKPOINT" >&2
    exit 1
fi

"$PYTHON" "$ROOT/NEZHA-TensorFlow/run_classifier_ner.py" \
    --task_name="$TASK_NAME" \
    --do_predict=true \
    --data_dir="$DATA_DIR" \
    --vocab_file="$VOCAB_FILE" \
    --bert_config_file="$BERT_CONFIG_FILE" \
    --init_checkpoint="$INIT_CHECKPOINT" \
    --max_seq_length="$MAX_SEQ_LENGTH" \
    --predict_batch_size="$PREDICT_BATCH_SIZE" \
    --window_stride="$WINDOW_STRIDE" \
    --max_predict_examples="$MAX_PREDICT_EXAMPLES" \
    --output_dir="$OUTPUT_DIR/"
