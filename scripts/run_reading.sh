#!/usr/bin/env bash
# Fine-tune NEZHA for reading comprehension on CMRC2018-style JSON (the original scripts/run_reading.sh):
# train on TRAIN_FILE, predict PREDICT_FILE (OUTPUT_DIR/dev_predictions.json, dev_nbest_predictions.json) and
# score the predictions with the official CMRC2018 evaluator (OUTPUT_DIR/result_metric.txt).
#
#   bash scripts/run_reading.sh                                          # the original's settings
#   INIT_CHECKPOINT=none MAX_TRAIN_EXAMPLES=2000 MAX_SEQ_LENGTH=256 bash scripts/run_reading.sh
#
# Settings (environment variables; defaults below, older names in scripts/lib.sh): DATA_DIR (with train.json
# and dev.json: `python utils/prepare_data.py --output_dir output/data` builds them), TRAIN_FILE, PREDICT_FILE,
# MODEL_DIR, VOCAB_FILE, BERT_CONFIG_FILE, INIT_CHECKPOINT (default MODEL_DIR/model.ckpt; `none` trains from
# random weights), OUTPUT_DIR, RESULT_FILE, MAX_SEQ_LENGTH, DOC_STRIDE, MAX_QUERY_LENGTH, TRAIN_BATCH_SIZE,
# PREDICT_BATCH_SIZE, LEARNING_RATE, NUM_TRAIN_EPOCHS, SAVE_CHECKPOINTS_STEPS, DO_LOWER_CASE, N_BEST_SIZE,
# MAX_ANSWER_LENGTH, MAX_TRAIN_EXAMPLES, MAX_PREDICT_EXAMPLES (0: all; the evaluator still scores every
# question of PREDICT_FILE, unanswered ones count 0), PYTHON. Extra arguments go to run_squad.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setting DATA_DIR "$ROOT/output/data/cmrc"
setting TRAIN_FILE "$DATA_DIR/train.json"
setting PREDICT_FILE "$DATA_DIR/dev.json"
model_settings
setting INIT_CHECKPOINT "$MODEL_DIR/model.ckpt"
setting OUTPUT_DIR "$ROOT/output/cmrc"
setting RESULT_FILE "$OUTPUT_DIR/result_metric.txt"
setting MAX_SEQ_LENGTH 512
setting DOC_STRIDE 128
setting MAX_QUERY_LENGTH 64
setting TRAIN_BATCH_SIZE 4
setting PREDICT_BATCH_SIZE 8
setting LEARNING_RATE 3e-5
setting NUM_TRAIN_EPOCHS 1
setting SAVE_CHECKPOINTS_STEPS 1000
bool_setting DO_LOWER_CASE false
setting N_BEST_SIZE 20
setting MAX_ANSWER_LENGTH 30
setting MAX_TRAIN_EXAMPLES 0
setting MAX_PREDICT_EXAMPLES 0

for file in "$TRAIN_FILE" "$PREDICT_FILE"; do
    need_file "$file" "no reading-comprehension set here: build the CMRC-style set with '$PYTHON" \
        "$ROOT/utils/prepare_data.py --output_dir $ROOT/output/data', or set DATA_DIR (or TRAIN_FILE/PREDICT_FILE)"
done
need_file "$VOCAB_FILE" "no vocabulary here (set MODEL_DIR or VOCAB_FILE)"
need_file "$BERT_CONFIG_FILE" "no model config here (set MODEL_DIR or BERT_CONFIG_FILE)"
need_checkpoint "$INIT_CHECKPOINT" "$MODEL_DIR"

"$PYTHON" "$ROOT/NEZHA-TensorFlow/run_squad.py" \
    --vocab_file="$VOCAB_FILE" --bert_config_file="$BERT_CONFIG_FILE" --init_checkpoint="$INIT_CHECKPOINT" \
    --do_train=True --train_file="$TRAIN_FILE" --do_predict=True --predict_file="$PREDICT_FILE" \
    --train_batch_size="$TRAIN_BATCH_SIZE" --predict_batch_size="$PREDICT_BATCH_SIZE" \
    --learning_rate="$LEARNING_RATE" --num_train_epochs="$NUM_TRAIN_EPOCHS" --max_seq_length="$MAX_SEQ_LENGTH" \
    --doc_stride="$DOC_STRIDE" --max_query_length="$MAX_QUERY_LENGTH" --n_best_size="$N_BEST_SIZE" \
    --max_answer_length="$MAX_ANSWER_LENGTH" --save_checkpoints_steps="$SAVE_CHECKPOINTS_STEPS" \
    --do_lower_case="$DO_LOWER_CASE" --max_train_examples="$MAX_TRAIN_EXAMPLES" \
    --max_predict_examples="$MAX_PREDICT_EXAMPLES" --output_dir="$OUTPUT_DIR" "$@"

"$PYTHON" "$ROOT/utils/cmrc2018_evaluate.py" "$PREDICT_FILE" "$OUTPUT_DIR/dev_predictions.json" "$RESULT_FILE"
