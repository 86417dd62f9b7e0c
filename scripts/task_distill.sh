#!/usr/bin/env bash
# TinyBERT task distillation (the original README's three task_distill.py commands), all under OUTPUT_DIR:
# intermediate-layer distillation into TMP_DIR (OUTPUT_DIR/intermediate), prediction-layer distillation
# (--pred_distill) into PRED_DIR (OUTPUT_DIR/pred, the distilled model), then --do_eval of that student on the
# dev set into EVAL_DIR (OUTPUT_DIR/eval: eval_results.txt, eval_predictions.tsv). MNLI adds *-MM beside them.
#
#   bash scripts/task_distill.sh                                     # ChnSenti from utils/prepare_data.py
#   AUG=1 bash scripts/task_distill.sh                               # train on TASK_DIR/train_aug.tsv
#   TASK_NAME=mnli TASK_DIR=glue/MNLI TEACHER=ft_bert GENERAL_STUDENT=general_tinybert \
#       STAGE1_EPOCHS=10 bash scripts/task_distill.sh                # GLUE, the original's settings
#
# TEACHER: a model fine-tuned on the task (a TinyBERT/Hugging Face classifier directory, or a NEZHA-TensorFlow
# run_classifier.py checkpoint converted by TinyBERT/convert_nezha_checkpoint.py --label_list ...).
# GENERAL_STUDENT: the general TinyBERT (general_distill.sh's output). TASK_DIR defaults to the ChnSenti set
# written by `python utils/prepare_data.py --output_dir output/data`. Every path and size can be set in the
# environment; further arguments go to every task_distill.py call.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

TEACHER=${TEACHER:-$ROOT/output/teacher_text_clf}
GENERAL_STUDENT=${GENERAL_STUDENT:-$ROOT/output/general_tinybert}
TASK_DIR=${TASK_DIR:-$ROOT/output/data/chnsenti}
TASK_NAME=${TASK_NAME:-text_clf}
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/output/tinybert_$TASK_NAME}
TMP_DIR=${TMP_DIR:-$OUTPUT_DIR/intermediate}
PRED_DIR=${PRED_DIR:-$OUTPUT_DIR/pred}
EVAL_DIR=${EVAL_DIR:-$OUTPUT_DIR/eval}
AUG=${AUG:-0}
SEQ=${SEQ:-128}
BATCH=${BATCH:-32}
EVAL_BATCH=${EVAL_BATCH:-32}
STAGE1_EPOCHS=${STAGE1_EPOCHS:-${EPOCHS:-10}}
STAGE2_EPOCHS=${STAGE2_EPOCHS:-3}
STAGE1_LR=${STAGE1_LR:-5e-5}
STAGE2_LR=${STAGE2_LR:-3e-5}
STAGE1_EVAL_STEP=${STAGE1_EVAL_STEP:-${EVAL_STEP:-50}}
STAGE2_EVAL_STEP=${STAGE2_EVAL_STEP:-${EVAL_STEP:-100}}
TEMPERATURE=${TEMPERATURE:-1.0}
GRAD_ACCUM=${GRAD_ACCUM:-1}
SEED=${SEED:-42}
LOWER_CASE=${LOWER_CASE:-1}
FP16=${FP16:-0}

fail() {
    echo "task_distill.sh: error: $*" >&2
    exit 1
}

[[ -d "$TASK_DIR" ]] || fail "no task data at $TASK_DIR: run '$PYTHON $ROOT/utils/prepare_data.py --output_dir" \
    "$ROOT/output/data', or set TASK_DIR"
[[ -d "$TEACHER" ]] || fail "no teacher at $TEACHER: set TEACHER to a model fine-tuned on $TASK_NAME (or convert" \
    "a NEZHA run_classifier.py checkpoint with TinyBERT/convert_nezha_checkpoint.py --label_list)"
[[ -d "$GENERAL_STUDENT" ]] || fail "no general student at $GENERAL_STUDENT: run scripts/general_distill.sh," \
    "or set GENERAL_STUDENT"

flags=(--data_dir "$TASK_DIR" --task_name "$TASK_NAME" --max_seq_length "$SEQ" --seed "$SEED")
[[ "$LOWER_CASE" == 1 ]] && flags+=(--do_lower_case)
[[ "$FP16" == 1 ]] && flags+=(--fp16)
train_flags=(--teacher_model "$TEACHER" --train_batch_size "$BATCH" --eval_batch_size "$EVAL_BATCH"
             --gradient_accumulation_steps "$GRAD_ACCUM" --temperature "$TEMPERATURE")
[[ "$AUG" == 1 ]] && train_flags+=(--aug_train)

echo "== stage 1: intermediate-layer distillation -> $TMP_DIR"
"$PYTHON" "$ROOT/TinyBERT/task_distill.py" "${flags[@]}" "${train_flags[@]}" \
    --student_model "$GENERAL_STUDENT" --output_dir "$TMP_DIR" \
    --num_train_epochs "$STAGE1_EPOCHS" --learning_rate "$STAGE1_LR" --eval_step "$STAGE1_EVAL_STEP" "$@"

echo "== stage 2: prediction-layer distillation -> $PRED_DIR"
"$PYTHON" "$ROOT/TinyBERT/task_distill.py" "${flags[@]}" "${train_flags[@]}" --pred_distill \
    --student_model "$TMP_DIR" --output_dir "$PRED_DIR" \
    --num_train_epochs "$STAGE2_EPOCHS" --learning_rate "$STAGE2_LR" --eval_step "$STAGE2_EVAL_STEP" "$@"

echo "== evaluation -> $EVAL_DIR"
"$PYTHON" "$ROOT/TinyBERT/task_distill.py" "${flags[@]}" --do_eval --student_model "$PRED_DIR" \
    --output_dir "$EVAL_DIR" --eval_batch_size "$EVAL_BATCH" "$@"
cat "$EVAL_DIR/eval_results.txt"
