#!/usr/bin/env bash
# TinyBERT general distillation, step 1 (the original README's pregenerate_training_data.py command): turn a
# raw corpus into per-epoch JSON-lines instances, OUTPUT_DIR/epoch_{i}.json and epoch_{i}_metrics.json.
#
#   bash scripts/pregenerate.sh                                  # a small run on the prepared Chinese corpus
#   CORPUS=my_corpus.txt BERT_MODEL=/path/to/bert EPOCHS=3 SEQ=128 bash scripts/pregenerate.sh
#
# Corpus: one sentence per line, a blank line between documents (`python utils/prepare_data.py --output_dir
# output/data` builds output/data/corpus/zh.txt). Only vocab.txt of BERT_MODEL is read. Every path and size
# below can be set in the environment; further arguments go to pregenerate_training_data.py unchanged.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

CORPUS=${CORPUS:-$ROOT/output/data/corpus/zh.txt}
BERT_MODEL=${BERT_MODEL:-$ROOT/NEZHA-TensorFlow/nezha}
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/output/pregenerated}
EPOCHS=${EPOCHS:-1}
SEQ=${SEQ:-128}
SHORT_SEQ_PROB=${SHORT_SEQ_PROB:-0.1}
MASKED_LM_PROB=${MASKED_LM_PROB:-0.0}
MAX_PREDICTIONS=${MAX_PREDICTIONS:-20}
NUM_WORKERS=${NUM_WORKERS:-1}
REDUCE_MEMORY=${REDUCE_MEMORY:-1}
LOWER_CASE=${LOWER_CASE:-1}
WHOLE_WORD_MASK=${WHOLE_WORD_MASK:-0}
SEED=${SEED:-12345}

fail() {
    echo "pregenerate.sh: error: $*" >&2
    exit 1
}

[[ -f "$CORPUS" ]] || fail "no corpus at $CORPUS: build it with '$PYTHON $ROOT/utils/prepare_data.py" \
    "--output_dir $ROOT/output/data', or set CORPUS"
[[ -f "$BERT_MODEL/vocab.txt" ]] || fail "no vocab.txt in $BERT_MODEL (set BERT_MODEL to a model directory)"

flags=()
[[ "$REDUCE_MEMORY" == 1 ]] && flags+=(--reduce_memory)
[[ "$LOWER_CASE" == 1 ]] && flags+=(--do_lower_case)
[[ "$WHOLE_WORD_MASK" == 1 ]] && flags+=(--do_whole_word_mask)

"$PYTHON" "$ROOT/TinyBERT/pregenerate_training_data.py" \
    --train_corpus "$CORPUS" \
    --bert_model "$BERT_MODEL" \
    --epochs_to_generate "$EPOCHS" \
    --max_seq_len "$SEQ" \
    --short_seq_prob "$SHORT_SEQ_PROB" \
    --masked_lm_prob "$MASKED_LM_PROB" \
    --max_predictions_per_seq "$MAX_PREDICTIONS" \
    --num_workers "$NUM_WORKERS" \
    --seed "$SEED" \
    --output_dir "$OUTPUT_DIR" \
    "${flags[@]}" "$@"
