#!/usr/bin/env bash
# Fine-tune NEZHA on People's Daily NER (the original's run_seq_labelling.sh): train, evaluate every saved
# checkpoint on dev, then pick the best checkpoint by entity F1 and label the test set with it
# (select_best.py, which replaces read_tf_events.py, runs run_seq_labelling_predict.sh).
#
#   scripts/run_seq_labelling.sh
#   INIT_CHECKPOINT=none BERT_CONFIG_FILE=NEZHA-TensorFlow/nezha/bert_config_tiny.json MAX_SEQ_LENGTH=128 \
#     MAX_TRAIN_EXAMPLES=2000 NUM_TRAIN_EPOCHS=1 LEARNING_RATE=1e-3 scripts/run_seq_labelling.sh
#
# Settings (environment variables; defaults below, older names in scripts/lib.sh): TASK_NAME, DATA_DIR
# (default: the set built by `python utils/prepare_data.py --output_dir output/data`), MODEL_DIR,
# BERT_CONFIG_FILE, VOCAB_FILE, INIT_CHECKPOINT (default: the released NEZHA-base in NEZHA-TensorFlow/nezha/,
# model.ckpt.index + model.ckpt.data-*; `none` trains from scratch), OUTPUT_DIR, MAX_SEQ_LENGTH,
# TRAIN_BATCH_SIZE, EVAL_BATCH_SIZE, PREDICT_BATCH_SIZE, NUM_TRAIN_EPOCHS, LEARNING_RATE,
# SAVE_CHECKPOINTS_STEPS, WINDOW_STRIDE (tokens between windows of a sentence too long for one),
# MAX_TRAIN_EXAMPLES, MAX_EVAL_EXAMPLES, MAX_PREDICT_EXAMPLES (0: all), PYTHON. Extra arguments are passed on
# to run_classifier_ner.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setting TASK_NAME ner
setting DATA_DIR "$ROOT/output/data/peoples_daily_ner"
model_settings
setting INIT_CHECKPOINT "$MODEL_DIR/model.ckpt"
setting OUTPUT_DIR "$ROOT/output/peoples-daily-ner"
setting MAX_SEQ_LENGTH 256
setting TRAIN_BATCH_SIZE 16
setting EVAL_BATCH_SIZE 16
setting PREDICT_BATCH_SIZE 16
setting NUM_TRAIN_EPOCHS 10
setting LEARNING_RATE 3e-5
setting SAVE_CHECKPOINTS_STEPS 100
setting WINDOW_STRIDE 128
setting MAX_TRAIN_EXAMPLES 0
setting MAX_EVAL_EXAMPLES 0
setting MAX_PREDICT_EXAMPLES 0
# run_seq_labelling_predict.sh, started by select_best.py, uses these
export PYTHON BERT_CONFIG_FILE VOCAB_FILE WINDOW_STRIDE MAX_PREDICT_EXAMPLES

need_file "$DATA_DIR/train.txt" "no NER data here (for People's Daily run: $PYTHON $ROOT/utils/prepare_data.py" \
    "--output_dir $ROOT/output/data; or set DATA_DIR)"
need_checkpoint "$INIT_CHECKPOINT" "$MODEL_DIR"

finetune_and_select run_classifier_ner.py --window_stride="$WINDOW_STRIDE" "$@"
