#!/usr/bin/env bash
# TinyBERT general distillation, step 2 (the original README's general_distill.py command): a student built
# from STUDENT_CONFIG learns TEACHER's attention scores and hidden states on PREGENERATED data (pregenerate.sh).
#
#   bash scripts/general_distill.sh                              # a small run: tiny Chinese student, 1 epoch
#   TEACHER=output/nezha_pytorch STUDENT_CONFIG=TinyBERT/configs/tinybert_4l_312_zh TRAIN_BATCH_SIZE=256 \
#       NUM_TRAIN_EPOCHS=3 NPROC=8 bash scripts/general_distill.sh   # the original's settings on 8 processes
#   CONTINUE_TRAIN=1 bash scripts/general_distill.sh             # resume an interrupted run from OUTPUT_DIR
#
# Settings (environment variables; defaults below, older names in scripts/lib.sh): PREGENERATED, TEACHER (any
# directory the TinyBERT transformer package loads: config.json, weights, vocab.txt, e.g. a NEZHA checkpoint
# converted by TinyBERT/convert_nezha_checkpoint.py), STUDENT_CONFIG (the teacher's head count, a layer count
# that divides the teacher's), OUTPUT_DIR, NUM_TRAIN_EPOCHS, TRAIN_BATCH_SIZE, MAX_SEQ_LENGTH, LEARNING_RATE,
# WARMUP_PROPORTION, GRADIENT_ACCUMULATION_STEPS, EVAL_STEP, SEED, NPROC (> 1: torchrun --nproc_per_node NPROC,
# DDP), USE_FP16, REDUCE_MEMORY, DO_LOWER_CASE, CONTINUE_TRAIN, PYTHON. Further arguments go to
# general_distill.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setting PREGENERATED "$ROOT/output/pregenerated"
setting TEACHER "$ROOT/output/teacher"
setting STUDENT_CONFIG "$ROOT/TinyBERT/configs/tiny_student_zh"
setting OUTPUT_DIR "$ROOT/output/general_tinybert"
setting NUM_TRAIN_EPOCHS 1
setting TRAIN_BATCH_SIZE 32
setting MAX_SEQ_LENGTH 128
setting LEARNING_RATE 5e-5
setting WARMUP_PROPORTION 0.1
setting GRADIENT_ACCUMULATION_STEPS 1
setting EVAL_STEP 1000
setting SEED 42
torch_launcher
bool_setting USE_FP16 false
bool_setting REDUCE_MEMORY true
bool_setting DO_LOWER_CASE true
bool_setting CONTINUE_TRAIN false

need_file "$PREGENERATED/epoch_0.json" "no pregenerated data here: run scripts/pregenerate.sh first, or set" \
    "PREGENERATED"
need_dir "$TEACHER" "no teacher here: convert a NEZHA/BERT checkpoint with '$PYTHON" \
    "$ROOT/TinyBERT/convert_nezha_checkpoint.py ... --output_dir $TEACHER', or set TEACHER to a model directory" \
    "(config.json, pytorch_model.bin or model.safetensors, vocab.txt)"

flags=()
[[ "$REDUCE_MEMORY" == true ]] && flags+=(--reduce_memory)
[[ "$DO_LOWER_CASE" == true ]] && flags+=(--do_lower_case)
[[ "$USE_FP16" == true ]] && flags+=(--fp16)
STUDENT=$STUDENT_CONFIG
if [[ "$CONTINUE_TRAIN" == true ]]; then
    flags+=(--continue_train)
    STUDENT=$OUTPUT_DIR
fi

"${LAUNCH[@]}" "$ROOT/TinyBERT/general_distill.py" \
    --pregenerated_data "$PREGENERATED" \
    --teacher_model "$TEACHER" \
    --student_model "$STUDENT" \
    --output_dir "$OUTPUT_DIR" \
    --max_seq_length "$MAX_SEQ_LENGTH" \
    --train_batch_size "$TRAIN_BATCH_SIZE" \
    --learning_rate "$LEARNING_RATE" \
    --warmup_proportion "$WARMUP_PROPORTION" \
    --gradient_accumulation_steps "$GRADIENT_ACCUMULATION_STEPS" \
    --num_train_epochs "$NUM_TRAIN_EPOCHS" \
    --eval_step "$EVAL_STEP" \
    --seed "$SEED" \
    "${flags[@]}" "$@"
