#!/usr/bin/env bash
# Predict a classification test set with a fine-tuned checkpoint (the original's run_clf_predict.sh):
#   run_clf_predict.sh TASK_NAME DATA_DIR MODEL_DIR CHECKPOINT MAX_SEQ_LENGTH PREDICT_BATCH_SIZE OUTPUT_DIR
# Positional arguments win; missing ones come from the same-named environment variables (INIT_CHECKPOINT for
# CHECKPOINT, a directory meaning its newest checkpoint), then the defaults. Settings: those seven,
# BERT_CONFIG_FILE and VOCAB_FILE (default MODEL_DIR/bert_config.json and MODEL_DIR/vocab.txt), PYTHON.
# Writes OUTPUT_DIR/test_results.tsv, OUTPUT_DIR/test_predictions.tsv and, when the test set has labels,
# OUTPUT_DIR/eval/test_results.txt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

predict_settings text_clf "$ROOT/output/data/chnsenti" "$ROOT/output/${1:-${TASK_NAME:-text_clf}}" 128 32 -- "$@"
need_dir "$DATA_DIR" "no task data here (expected the task's test set; set DATA_DIR)"

"$PYTHON" "$ROOT/NEZHA-TensorFlow/run_classifier.py" \
    --task_name="$TASK_NAME" --do_predict=true --data_dir="$DATA_DIR" \
    --vocab_file="$VOCAB_FILE" --bert_config_file="$BERT_CONFIG_FILE" --init_checkpoint="$INIT_CHECKPOINT" \
    --max_seq_length="$MAX_SEQ_LENGTH" --predict_batch_size="$PREDICT_BATCH_SIZE" --output_dir="$OUTPUT_DIR"
