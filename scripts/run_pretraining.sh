#!/usr/bin/env bash
# Pretrain NEZHA (masked LM + next sentence) as the original scripts/run_pretraining.sh did
# (`mpiexec -np 2 python run_pretraining.py --horovod ... --do_train --do_eval`), runnable anywhere:
#
#   python utils/prepare_data.py --output_dir output/data     # corpus/zh.txt, once
#   bash scripts/run_pretraining.sh                           # a tiny model, a few minutes on a laptop
#   NUM_PROC=2 bash scripts/run_pretraining.sh                # 2 processes: horovodrun if installed, else
#                                                             # tf.distribute multi_worker (TF_CONFIG)
#   BERT_CONFIG=NEZHA-TensorFlow/nezha/bert_config.json INPUT_FILE='data/*.tfrecord' LR=2e-5 \
#       INIT_CHECKPOINT=NEZHA-TensorFlow/nezha/model.ckpt TRAIN_STEPS=200 bash scripts/run_pretraining.sh
#
# Without INPUT_FILE the tfrecords are first built from CORPUS (one sentence per line, blank line between
# documents) by utils/create_pretraining_data.py into DATA_DIR (kept and reused; REBUILD=1 builds again).
# A run resumes from the newest checkpoint in OUTPUT_DIR. Extra arguments go to run_pretraining.py.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

CORPUS=${CORPUS:-$ROOT/output/data/corpus/zh.txt}
DATA_DIR=${DATA_DIR:-$ROOT/output/pretraining_data}
NUM_FILES=${NUM_FILES:-4}
VOCAB_FILE=${VOCAB_FILE:-${VOCAB:-$ROOT/NEZHA-TensorFlow/nezha/vocab.txt}}
DUPE_FACTOR=${DUPE_FACTOR:-2}
WHOLE_WORD_MASK=${WHOLE_WORD_MASK:-True}
DOCS_PER_SHARD=${DOCS_PER_SHARD:-10000}
RANDOM_SEED=${RANDOM_SEED:-12345}
REBUILD=${REBUILD:-0}
INPUT_FILE=${INPUT_FILE:-}
OUTPUT_DIR=${OUTPUT_DIR:-$ROOT/output/pretraining}
BERT_CONFIG=${BERT_CONFIG:-${BERT_CONFIG_FILE:-$ROOT/NEZHA-TensorFlow/nezha/bert_config_tiny.json}}
INIT_CHECKPOINT=${INIT_CHECKPOINT:-}
NUM_PROC=${NUM_PROC:-1}
ENGINE=${ENGINE:-auto}           # auto | horovod | multi_worker (used when NUM_PROC > 1)
PORT=${PORT:-23456}              # first TF_CONFIG port of the multi_worker engine
SEQ=${SEQ:-128}
MAX_PRED=${MAX_PRED:-20}
BATCH=${BATCH:-16}
EVAL_BATCH=${EVAL_BATCH:-8}
# The original continued the released model at 2e-5; a tiny model trained from scratch needs a larger rate.
LR=${LR:-1e-3}
TRAIN_STEPS=${TRAIN_STEPS:-200}
WARMUP_STEPS=${WARMUP_STEPS:-10}
SAVE_STEPS=${SAVE_STEPS:-100}
EVAL_STEPS=${EVAL_STEPS:-20}
OPTIMIZER=${OPTIMIZER:-lamb}
ACCUM_STEPS=${ACCUM_STEPS:-1}
USE_XLA=${USE_XLA:-False}
USE_FP16=${USE_FP16:-False}
USE_BF16=${USE_BF16:-False}
DO_EVAL=${DO_EVAL:-True}

fail() {
    echo "run_pretraining.sh: error: $*" >&2
    exit 1
}

[[ -f "$BERT_CONFIG" ]] || fail "no model config at $BERT_CONFIG (set BERT_CONFIG)"
(( NUM_PROC >= 1 )) || fail "NUM_PROC must be at least 1, got $NUM_PROC"

if [[ -z "$INPUT_FILE" ]]; then
    (( NUM_FILES >= NUM_PROC )) || fail "NUM_FILES ($NUM_FILES) must be at least NUM_PROC ($NUM_PROC): files are sharded by rank"
    outputs=()
    for ((i = 0; i < NUM_FILES; i++)); do outputs+=("$DATA_DIR/pretrain-$(printf %05d "$i").tfrecord"); done
    if [[ "$REBUILD" != 0 || ! -f "${outputs[-1]}" ]]; then
        [[ -f "$CORPUS" ]] || fail "no corpus at $CORPUS: build it with" \
            "'$PYTHON $ROOT/utils/prepare_data.py --output_dir $ROOT/output/data', or set CORPUS or INPUT_FILE"
        [[ -f "$VOCAB_FILE" ]] || fail "no vocabulary at $VOCAB_FILE (set VOCAB_FILE)"
        mkdir -p "$DATA_DIR"
        (IFS=,; echo "building ${outputs[*]} from $CORPUS")
        (cd "$ROOT" && "$PYTHON" utils/create_pretraining_data.py \
            --input_file="$CORPUS" \
            --output_file="$(IFS=,; echo "${outputs[*]}")" \
            --vocab_file="$VOCAB_FILE" \
            --do_lower_case=True \
            --do_whole_word_mask="$WHOLE_WORD_MASK" \
            --max_seq_length="$SEQ" \
            --max_predictions_per_seq="$MAX_PRED" \
            --seed="$RANDOM_SEED" \
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
    --bert_config_file="$BERT_CONFIG"
    --train_batch_size="$BATCH"
    --eval_batch_size="$EVAL_BATCH"
    --max_seq_length="$SEQ"
    --max_predictions_per_seq="$MAX_PRED"
    --num_train_steps="$TRAIN_STEPS"
    --num_warmup_steps="$WARMUP_STEPS"
    --learning_rate="$LR"
    --save_checkpoints_steps="$SAVE_STEPS"
    --max_eval_steps="$EVAL_STEPS"
    --optimizer="$OPTIMIZER"
    --gradient_accumulation_steps="$ACCUM_STEPS"
    --use_xla="$USE_XLA"
    --use_fp16="$USE_FP16"
    --use_bf16="$USE_BF16"
    --report_loss=True
)
[[ -n "$INIT_CHECKPOINT" ]] && args+=(--init_checkpoint="$INIT_CHECKPOINT")
ENTRY="$ROOT/NEZHA-TensorFlow/run_pretraining.py"
mkdir -p "$OUTPUT_DIR"

if (( NUM_PROC == 1 )); then
    exec "$PYTHON" "$ENTRY" "${args[@]}" "$@"
fi

HOROVODRUN=$(command -v "$(dirname "$PYTHON")/horovodrun" || command -v horovodrun || true)
if [[ "$ENGINE" == auto ]]; then
    if [[ -n "$HOROVODRUN" ]]; then ENGINE=horovod; else ENGINE=multi_worker; fi
fi
case "$ENGINE" in
    horovod)
        [[ -n "$HOROVODRUN" ]] || fail "ENGINE=horovod but horovodrun is not installed (make horovod)"
        exec "$HOROVODRUN" -np "$NUM_PROC" -H "localhost:$NUM_PROC" --gloo \
            "$PYTHON" "$ENTRY" "${args[@]}" --horovod "$@"
        ;;
    multi_worker)
        workers=()
        for ((i = 0; i < NUM_PROC; i++)); do workers+=("\"127.0.0.1:$((PORT + i))\""); done
        cluster="{\"worker\": [$(IFS=,; echo "${workers[*]}")]}"
        pids=()
        trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
        for ((i = 0; i < NUM_PROC; i++)); do
            TF_CONFIG="{\"cluster\": $cluster, \"task\": {\"type\": \"worker\", \"index\": $i}}" \
                "$PYTHON" "$ENTRY" "${args[@]}" --distribution=multi_worker "$@" &
            pids+=("$!")
        done
        # One failed worker would leave the others waiting in a collective: stop them all.
        status=0
        for ((i = 0; i < NUM_PROC; i++)); do
            if ! wait -n; then status=1; kill "${pids[@]}" 2>/dev/null || true; fi
        done
        trap - EXIT INT TERM
        exit "$status"
        ;;
    *)
        fail "ENGINE must be auto, horovod or multi_worker, got $ENGINE"
        ;;
esac
