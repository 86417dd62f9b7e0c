#!/usr/bin/env bash
# Pretrain NEZHA (masked LM + next sentence) as the original scripts/run_pretraining.sh did
# (`mpiexec -np 2 python run_pretraining.py --horovod ... --do_train --do_eval`), runnable anywhere:
#
#   python utils/prepare_data.py --output_dir output/data     # corpus/zh.txt, once
#   bash scripts/run_pretraining.sh                           # a tiny model, a few minutes on a laptop
#   NPROC=2 bash scripts/run_pretraining.sh                   # 2 processes: horovodrun if installed, else
#                                                             # tf.distribute multi_worker (TF_CONFIG)
#   BERT_CONFIG_FILE=NEZHA-TensorFlow/nezha/bert_config.json INPUT_FILE='data/*.tfrecord' LEARNING_RATE=2e-5 \
#       INIT_CHECKPOINT=NEZHA-TensorFlow/nezha/model.ckpt NUM_TRAIN_STEPS=200 bash scripts/run_pretraining.sh
#
# Without INPUT_FILE the tfrecords are first built from CORPUS (one sentence per line, blank line between
# documents) by utils/create_pretraining_data.py into DATA_DIR (kept and reused; REBUILD=1 builds again).
# A run resumes from the newest checkpoint in OUTPUT_DIR. Extra arguments go to run_pretraining.py.
#
# Settings (environment variables; defaults below, older names in scripts/lib.sh): CORPUS, DATA_DIR,
# NUM_FILES, VOCAB_FILE, DUPE_FACTOR, DO_WHOLE_WORD_MASK, DOCS_PER_SHARD, SEED (of the data), REBUILD;
# INPUT_FILE, OUTPUT_DIR, BERT_CONFIG_FILE, INIT_CHECKPOINT (empty or `none`: random weights), NPROC, ENGINE
# (auto, horovod or multi_worker, when NPROC > 1), PORT (the first TF_CONFIG port of multi_worker),
# MAX_SEQ_LENGTH, MAX_PREDICTIONS_PER_SEQ, TRAIN_BATCH_SIZE, EVAL_BATCH_SIZE, LEARNING_RATE, NUM_TRAIN_STEPS,
# NUM_WARMUP_STEPS, SAVE_CHECKPOINTS_STEPS, MAX_EVAL_STEPS, OPTIMIZER, GRADIENT_ACCUMULATION_STEPS, USE_XLA,
# USE_FP16, USE_BF16, DO_EVAL, PYTHON.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setting CORPUS "$ROOT/output/data/corpus/zh.txt"
setting DATA_DIR "$ROOT/output/pretraining_data"
setting NUM_FILES 4
setting VOCAB_FILE "$ROOT/NEZHA-TensorFlow/nezha/vocab.txt"
setting DUPE_FACTOR 2
bool_setting DO_WHOLE_WORD_MASK true
setting DOCS_PER_SHARD 10000
setting SEED 12345
bool_setting REBUILD false
setting INPUT_FILE ""
setting OUTPUT_DIR "$ROOT/output/pretraining"
setting BERT_CONFIG_FILE "$ROOT/NEZHA-TensorFlow/nezha/bert_config_tiny.json"
setting INIT_CHECKPOINT ""
process_count
setting ENGINE auto
setting PORT 23456
setting MAX_SEQ_LENGTH 128
setting MAX_PREDICTIONS_PER_SEQ 20
setting TRAIN_BATCH_SIZE 16
setting EVAL_BATCH_SIZE 8
# The original continued the released model at 2e-5; a tiny model trained from scratch needs a larger rate.
setting LEARNING_RATE 1e-3
setting NUM_TRAIN_STEPS 200
setting NUM_WARMUP_STEPS 10
setting SAVE_CHECKPOINTS_STEPS 100
setting MAX_EVAL_STEPS 20
setting OPTIMIZER lamb
setting GRADIENT_ACCUMULATION_STEPS 1
bool_setting USE_XLA false
bool_setting USE_FP16 false
bool_setting USE_BF16 false
bool_setting DO_EVAL true

need_file "$BERT_CONFIG_FILE" "no model config here (set BERT_CONFIG_FILE)"
if [[ -n "$INIT_CHECKPOINT" ]]; then need_checkpoint "$INIT_CHECKPOINT" "$ROOT/NEZHA-TensorFlow/nezha"; fi
[[ "${INIT_CHECKPOINT,,}" == none ]] && INIT_CHECKPOINT=""

if [[ -z "$INPUT_FILE" ]]; then
    (( NUM_FILES >= NPROC )) || fail "NUM_FILES=$NUM_FILES: expected at least NPROC ($NPROC) files, one per rank"
    outputs=()
    for ((i = 0; i < NUM_FILES; i++)); do outputs+=("$DATA_DIR/pretrain-$(printf %05d "$i").tfrecord"); done
    if [[ "$REBUILD" == true || ! -f "${outputs[-1]}" ]]; then
        need_file "$CORPUS" "no corpus here: build it with '$PYTHON $ROOT/utils/prepare_data.py --output_dir" \
            "$ROOT/output/data', or set CORPUS or INPUT_FILE"
        need_file "$VOCAB_FILE" "no vocabulary here (set VOCAB_FILE)"
        mkdir -p "$DATA_DIR"
        (IFS=,; echo "building ${outputs[*]} from $CORPUS")
        (cd "$ROOT" && "$PYTHON" utils/create_pretraining_data.py \
            --input_file="$CORPUS" \
            --output_file="$(IFS=,; echo "${outputs[*]}")" \
            --vocab_file="$VOCAB_FILE" \
            --do_lower_case=True \
            --do_whole_word_mask="$DO_WHOLE_WORD_MASK" \
            --max_seq_length="$MAX_SEQ_LENGTH" \
            --max_predictions_per_seq="$MAX_PREDICTIONS_PER_SEQ" \
            --seed="$SEED" \
            --dupe_factor="$DUPE_FACTOR" \
            --docs_per_shard="$DOCS_PER_SHARD" \
            --masked_lm_prob=0.15 \
            --short_seq_prob=0.1)
    fi
    INPUT_FILE="$DATA_DIR/pretrain-*.tfrecord"
fi

args=(
    --input_file="$INPUT_FILE"
    --output_dir="$OUTPUT_DIR"
    --do_train=True
    --do_eval="$DO_EVAL"
    --bert_config_file="$BERT_CONFIG_FILE"
    --train_batch_size="$TRAIN_BATCH_SIZE"
    --eval_batch_size="$EVAL_BATCH_SIZE"
    --max_seq_length="$MAX_SEQ_LENGTH"
    --max_predictions_per_seq="$MAX_PREDICTIONS_PER_SEQ"
    --num_train_steps="$NUM_TRAIN_STEPS"
    --num_warmup_steps="$NUM_WARMUP_STEPS"
    --learning_rate="$LEARNING_RATE"
    --save_checkpoints_steps="$SAVE_CHECKPOINTS_STEPS"
    --max_eval_steps="$MAX_EVAL_STEPS"
    --optimizer="$OPTIMIZER"
    --gradient_accumulation_steps="$GRADIENT_ACCUMULATION_STEPS"
    --use_xla="$USE_XLA"
    --use_fp16="$USE_FP16"
    --use_bf16="$USE_BF16"
    --report_loss=True
)
[[ -n "$INIT_CHECKPOINT" ]] && args+=(--init_checkpoint="$INIT_CHECKPOINT")
ENTRY="$ROOT/NEZHA-TensorFlow/run_pretraining.py"
mkdir -p "$OUTPUT_DIR"

if (( NPROC == 1 )); then
    exec "$PYTHON" "$ENTRY" "${args[@]}" "$@"
fi

HOROVODRUN=$(command -v "$(dirname "$PYTHON")/horovodrun" || command -v horovodrun || true)
if [[ "$ENGINE" == auto ]]; then
    if [[ -n "$HOROVODRUN" ]]; then ENGINE=horovod; else ENGINE=multi_worker; fi
fi
case "$ENGINE" in
    horovod)
        [[ -n "$HOROVODRUN" ]] || fail "ENGINE=horovod: horovodrun is not installed (make horovod)"
        exec "$HOROVODRUN" -np "$NPROC" -H "localhost:$NPROC" --gloo \
            "$PYTHON" "$ENTRY" "${args[@]}" --horovod "$@"
        ;;
    multi_worker)
        workers=()
        for ((i = 0; i < NPROC; i++)); do workers+=("\"127.0.0.1:$((PORT + i))\""); done
        cluster="{\"worker\": [$(IFS=,; echo "${workers[*]}")]}"
        pids=()
        trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
        for ((i = 0; i < NPROC; i++)); do
            TF_CONFIG="{\"cluster\": $cluster, \"task\": {\"type\": \"worker\", \"index\": $i}}" \
                "$PYTHON" "$ENTRY" "${args[@]}" --distribution=multi_worker "$@" &
            pids+=("$!")
        done
        # One failed worker would leave the others waiting in a collective: stop them all.
        status=0
        for ((i = 0; i < NPROC; i++)); do
            if ! wait -n; then status=1; kill "${pids[@]}" 2>/dev/null || true; fi
        done
        trap - EXIT INT TERM
        exit "$status"
        ;;
    *)
        fail "ENGINE=$ENGINE: expected auto, horovod or multi_worker"
        ;;
esac
