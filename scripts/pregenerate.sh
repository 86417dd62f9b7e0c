#!/usr/bin/env bash
# TinyBERT general distillation, step 1 (the original README's pregenerate_training_data.py command): turn a
# raw corpus into per-epoch JSON-lines instances, OUTPUT_DIR/epoch_{i}.json and epoch_{i}_metrics.json.
#
#   bash scripts/pregenerate.sh                                  # a small run on the prepared Chinese corpus
#   CORPUS=my_corpus.txt BERT_MODEL=/path/to/bert NUM_TRAIN_EPOCHS=3 MAX_SEQ_LENGTH=128 bash scripts/pregenerate.sh
#
# Settings (environment variables; defaults below, older names in scripts/lib.sh): CORPUS (one sentence per
# line, a blank line between documents; `python utils/prepare_data.py --output_dir output/data` builds
# output/data/corpus/zh.txt), BERT_MODEL (only its vocab.txt is read), OUTPUT_DIR, NUM_TRAIN_EPOCHS (epochs to
# generate), MAX_SEQ_LENGTH, SHORT_SEQ_PROB, MASKED_LM_PROB, MAX_PREDICTIONS_PER_SEQ, NUM_WORKERS,
# REDUCE_MEMORY, DO_LOWER_CASE, DO_WHOLE_WORD_MASK, SEED, PYTHON. Further arguments go to
# pregenerate_training_data.py unchanged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setting CORPUS "$ROOT/output/data/corpus/zh.txt"
setting BERT_MODEL "$ROOT/NEZHA-TensorFlow/nezha"
setting OUTPUT_DIR "$ROOT/output/pregenerated"
setting NUM_TRAIN_EPOCHS 1
setting MAX_SEQ_LENGTH 128
setting SHORT_SEQ_PROB 0.1
setting MASKED_LM_PROB 0.0
setting MAX_PREDICTIONS_PER_SEQ 20
setting NUM_WORKERS 1
bool_setting REDUCE_MEMORY true
bool_setting DO_LOWER_CASE true
bool_setting DO_WHOLE_WORD_MASK false
setting SEED 12345

need_file "$CORPUS" "no corpus here: build it with '$PYTHON $ROOT/utils/prepare_data.py --output_dir" \
    "$ROOT/output/data', or set CORPUS"
need_file "$BERT_MODEL/vocab.txt" "no vocabulary here (set BERT_MODEL to a model directory)"

flags=()
[[ "$REDUCE_MEMORY" == true ]] && flags+=(--reduce_memory)
[[ "$DO_LOWER_CASE" == true ]] && flags+=(--do_lower_case)
[[ "$DO_WHOLE_WORD_MASK" == true ]] && flags+=(--do_whole_word_mask)

"$PYTHON" "$ROOT/TinyBERT/pregenerate_training_data.py" \
    --train_corpus "$CORPUS" \
    --bert_model "$BERT_MODEL" \
    --epochs_to_generate "$NUM_TRAIN_EPOCHS" \
    --max_seq_len "$MAX_SEQ_LENGTH" \
    --short_seq_prob "$SHORT_SEQ_PROB" \
    --masked_lm_prob "$MASKED_LM_PROB" \
    --max_predictions_per_seq "$MAX_PREDICTIONS_PER_SEQ" \
    --num_workers "$NUM_WORKERS" \
    --seed "$SEED" \
    --output_dir "$OUTPUT_DIR" \
    "${flags[@]}" "$@"
