#!/usr/bin/env bash
# Label the NER test set with a fine-tuned checkpoint (the original's run_seq_labelling_predict.sh):
#   run_seq_labelling_predict.sh TASK_NAME DATA_DIR MODEL_DIR CHECKPOINT MAX_SEQ_LENGTH PREDICT_BATCH_SIZE OUTPUT_DIR
# Positional arguments win; missing ones come from the same-named environment variables (INIT_CHECKPOINT for
# CHECKPOINT, a directory meaning its newest checkpoint), then the defaults. Settings: those seven,
# BERT_CONFIG_FILE and VOCAB_FILE (default MODEL_DIR/bert_config.json and MODEL_DIR/vocab.txt), WINDOW_STRIDE,
# MAX_PREDICT_EXAMPLES (0: all), PYTHON. Writes OUTPUT_DIR/test_predictions.txt (`char gold pred` lines),
# token_test.txt and eval/test_results.txt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

predict_settings ner "$ROOT/output/data/peoples_daily_ner" "$ROOT/output/peoples-daily-ner" 256 16 -- "$@"
setting WINDOW_STRIDE 128
setting MAX_PREDICT_EXAMPLES 0
need_file "$DATA_DIR/test.txt" "no NER test set here (\`char tag\` lines; set DATA_DIR)"

"$PYTHON" "$ROOT/NEZHA-TensorFlow/run_classifier_ner.py" \
    --task_name="$TASK_NAME" --do_predict=true --data_dir="$DATA_DIR" \
    --vocab_file="$VOCAB_FILE" --bert_config_file="$BERT_CONFIG_FILE" --init_checkpoint="$INIT_CHECKPOINT" \
    --max_seq_length="$MAX_SEQ_LENGTH" --predict_batch_size="$PREDICT_BATCH_SIZE" \
    --window_stride="$WINDOW_STRIDE" --max_predict_examples="$MAX_PREDICT_EXAMPLES" --output_dir="$OUTPUT_DIR"
