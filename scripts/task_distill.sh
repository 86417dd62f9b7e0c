#!/usr/bin/env bash
# TinyBERT task distillation (the original README's three task_distill.py commands), all under OUTPUT_DIR:
# intermediate-layer distillation into TMP_DIR (OUTPUT_DIR/intermediate), prediction-layer distillation
# (--pred_distill) into PRED_DIR (OUTPUT_DIR/pred, the distilled model), then --do_eval of that student on the
# dev set into EVAL_DIR (OUTPUT_DIR/eval: eval_results.txt, eval_predictions.tsv). MNLI adds *-MM beside them.
#
#   bash scripts/task_distill.sh                                     # ChnSenti from utils/prepare_data.py
#   AUG_TRAIN=1 bash scripts/task_distill.sh                         # train on DATA_DIR/train_aug.tsv
#   TASK_NAME=mnli DATA_DIR=glue/MNLI TEACHER=ft_bert GENERAL_STUDENT=general_tinybert \
#       STAGE1_NUM_TRAIN_EPOCHS=10 bash scripts/task_distill.sh      # GLUE, the original's settings
#
# Settings (environment variables; defaults below, older names in scripts/lib.sh): TEACHER (a model
# fine-tuned on the task: a TinyBERT/Hugging Face classifier directory, or a NEZHA-TensorFlow
# run_classifier.py checkpoint converted by TinyBERT/convert_nezha_checkpoint.py --label_list ...),
# GENERAL_STUDENT (the general TinyBERT, general_distill.sh's output), DATA_DIR (default: the ChnSenti set
# written by `python utils/prepare_data.py --output_dir output/data`), TASK_NAME, OUTPUT_DIR, TMP_DIR,
# PRED_DIR, EVAL_DIR, AUG_TRAIN, MAX_SEQ_LENGTH, TRAIN_BATCH_SIZE, EVAL_BATCH_SIZE, STAGE1_NUM_TRAIN_EPOCHS
# (default NUM_TRAIN_EPOCHS, else 10), STAGE2_NUM_TRAIN_EPOCHS, STAGE1_LEARNING_RATE, STAGE2_LEARNING_RATE,
# STAGE1_EVAL_STEP and STAGE2_EVAL_STEP (default EVAL_STEP, else 50 and 100), TEMPERATURE,
# GRADIENT_ACCUMULATION_STEPS, SEED, DO_LOWER_CASE, USE_FP16, NPROC (> 1: both distillation stages under
# torchrun --nproc_per_node NPROC; the evaluation runs as one process), PYTHON. Further arguments go to every
# task_distill.py call.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setting TEACHER "$ROOT/output/teacher_text_clf"
setting GENERAL_STUDENT "$ROOT/output/general_tinybert"
setting DATA_DIR "$ROOT/output/data/chnsenti"
setting TASK_NAME text_clf
setting OUTPUT_DIR "$ROOT/output/tinybert_$TASK_NAME"
setting TMP_DIR "$OUTPUT_DIR/intermediate"
setting PRED_DIR "$OUTPUT_DIR/pred"
setting EVAL_DIR "$OUTPUT_DIR/eval"
bool_setting AUG_TRAIN false
setting MAX_SEQ_LENGTH 128
setting TRAIN_BATCH_SIZE 32
setting EVAL_BATCH_SIZE 32
setting NUM_TRAIN_EPOCHS 10
setting STAGE1_NUM_TRAIN_EPOCHS "$NUM_TRAIN_EPOCHS"
setting STAGE2_NUM_TRAIN_EPOCHS 3
setting STAGE1_LEARNING_RATE 5e-5
setting STAGE2_LEARNING_RATE 3e-5
setting STAGE1_EVAL_STEP 50 EVAL_STEP
setting STAGE2_EVAL_STEP 100 EVAL_STEP
setting TEMPERATURE 1.0
setting GRADIENT_ACCUMULATION_STEPS 1
setting SEED 42
bool_setting DO_LOWER_CASE true
bool_setting USE_FP16 false
torch_launcher

need_dir "$DATA_DIR" "no task data here: run '$PYTHON $ROOT/utils/prepare_data.py --output_dir $ROOT/output/data'," \
    "or set DATA_DIR"
need_dir "$TEACHER" "no teacher here: set TEACHER to a model fine-tuned on $TASK_NAME (or convert a NEZHA" \
    "run_classifier.py checkpoint with TinyBERT/convert_nezha_checkpoint.py --label_list)"
need_dir "$GENERAL_STUDENT" "no general student here: run scripts/general_distill.sh, or set GENERAL_STUDENT"

flags=(--data_dir "$DATA_DIR" --task_name "$TASK_NAME" --max_seq_length "$MAX_SEQ_LENGTH" --seed "$SEED")
[[ "$DO_LOWER_CASE" == true ]] && flags+=(--do_lower_case)
[[ "$USE_FP16" == true ]] && flags+=(--fp16)
train_flags=(--teacher_model "$TEACHER" --train_batch_size "$TRAIN_BATCH_SIZE" --eval_batch_size "$EVAL_BATCH_SIZE"
             --gradient_accumulation_steps "$GRADIENT_ACCUMULATION_STEPS" --temperature "$TEMPERATURE")
[[ "$AUG_TRAIN" == true ]] && train_flags+=(--aug_train)

echo "== stage 1: intermediate-layer distillation -> $TMP_DIR"
"${LAUNCH[@]}" "$ROOT/TinyBERT/task_distill.py" "${flags[@]}" "${train_flags[@]}" \
    --student_model "$GENERAL_STUDENT" --output_dir "$TMP_DIR" --num_train_epochs "$STAGE1_NUM_TRAIN_EPOCHS" \
    --learning_rate "$STAGE1_LEARNING_RATE" --eval_step "$STAGE1_EVAL_STEP" "$@"

echo "== stage 2: prediction-layer distillation -> $PRED_DIR"
"${LAUNCH[@]}" "$ROOT/TinyBERT/task_distill.py" "${flags[@]}" "${train_flags[@]}" --pred_distill \
    --student_model "$TMP_DIR" --output_dir "$PRED_DIR" --num_train_epochs "$STAGE2_NUM_TRAIN_EPOCHS" \
    --learning_rate "$STAGE2_LEARNING_RATE" --eval_step "$STAGE2_EVAL_STEP" "$@"

echo "== evaluation -> $EVAL_DIR"
"$PYTHON" "$ROOT/TinyBERT/task_distill.py" "${flags[@]}" --do_eval --student_model "$PRED_DIR" \
    --output_dir "$EVAL_DIR" --eval_batch_size "$EVAL_BATCH_SIZE" "$@"
cat "$EVAL_DIR/eval_results.txt"
