#!/usr/bin/env bash
# TinyBERT general distillation, step 2 (the original README's general_distill.py command): a student built
# from STUDENT_CONFIG learns TEACHER's attention scores and hidden states on PREGENERATED data (pregenerate.sh).
#
#   bash scripts/general_distill.sh                              # a small run: tiny Chinese student, 1 epoch
#   TEACHER=output/nezha_pytorch STUDENT_CONFIG=TinyBERT/configs/tinybert_4l_312_zh BATCH=256 EPOCHS=3 \
#       NPROC=8 bash scripts/general_distill.sh                  # the original's settings on 8 processes
#   CONTINUE=1 bash scripts/general_distill.sh                   # resume an interrupted run from OUTPUT_DIR
#
# TEACHER: any directory the TinyBERT transformer package loads (config.json, weights, vocab.txt), e.g. a
# NEZHA checkpoint converted by TinyBERT/convert_nezha_checkpoint.py. The student needs the teacher's head
# count and a layer count that divides the teacher's. NPROC > 1 runs torchrun --nproc_per_node NPROC (DDP).
# Every path and size below can be set in the environment; further arguments go to general_distill.py.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

PREGENERATED=${PREGENERATED:-$ROOT/output/pregenerated}
TEACHER=${TEACHER:-$ROOT/output/teacher}
STUDENT_CONFIG=${STUDENT_CONFIG:-$ROOT/TinyBERT/configs/tiny_student_zh}
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/output/general_tinybert}
EPOCHS=${EPOCHS:-1}
BATCH=${BATCH:-32}
SEQ=${SEQ:-128}
LR=${LR:-5e-5}
WARMUP=${WARMUP:-0.1}
GRAD_ACCUM=${GRAD_ACCUM:-1}
EVAL_STEP=${EVAL_STEP:-1000}
SEED=${SEED:-42}
NPROC=${NPROC:-1}
FP16=${FP16:-0}
REDUCE_MEMORY=${REDUCE_MEMORY:-1}
LOWER_CASE=${LOWER_CASE:-1}
CONTINUE=${CONTINUE:-0}

fail() {
    echo "general_distill.sh: error: $*" >&2
    exit 1
}

[[ -f "$PREGENERATED/epoch_0.json" ]] || fail "no $PREGENERATED/epoch_0.json: run scripts/pregenerate.sh first," \
    "or set PREGENERATED"
[[ -d "$TEACHER" ]] || fail "no teacher at $TEACHER: convert a NEZHA/BERT checkpoint with" \
    "'$PYTHON $ROOT/TinyBERT/convert_nezha_checkpoint.py ... --output_dir $TEACHER', or set TEACHER to a" \
    "model directory (config.json, pytorch_model.bin or model.safetensors, vocab.txt)"

flags=()
[[ "$REDUCE_MEMORY" == 1 ]] && flags+=(--reduce_memory)
[[ "$LOWER_CASE" == 1 ]] && flags+=(--do_lower_case)
[[ "$FP16" == 1 ]] && flags+=(--fp16)
STUDENT=$STUDENT_CONFIG
if [[ "$CONTINUE" == 1 ]]; then
    flags+=(--continue_train)
    STUDENT=$OUTPUT_DIR
fi

if [[ "$NPROC" -gt 1 ]]; then
    launcher=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC")
else
    launcher=("$PYTHON")
fi

"${launcher[@]}" "$ROOT/TinyBERT/general_distill.py" \
    --pregenerated_data "$PREGENERATED" \
    --teacher_model "$TEACHER" \
    --student_model "$STUDENT" \
    --output_dir "$OUTPUT_DIR" \
    --max_seq_length "$SEQ" \
    --train_batch_size "$BATCH" \
    --learning_rate "$LR" \
    --warmup_proportion "$WARMUP" \
    --gradient_accumulation_steps "$GRAD_ACCUM" \
    --num_train_epochs "$EPOCHS" \
    --eval_step "$EVAL_STEP" \
    --seed "$SEED" \
    "${flags[@]}" "$@"
