# Sourced by every script here: ROOT and PYTHON, errors, settings read from the environment under one
# vocabulary, booleans, checkpoint checks and the launcher of NPROC processes.
#
# Vocabulary: a size or switch is named after the flag it sets, in capitals (MAX_SEQ_LENGTH for
# --max_seq_length; the BERT name where the two trees' flags differ: NUM_TRAIN_EPOCHS also for
# --epochs_to_generate, USE_FP16 also for --fp16); a path is named for what it holds (DATA_DIR: the task's
# data, TEACHER, CORPUS, ...). The older names stay accepted as aliases, in SETTING_ALIASES below.
# A setting under its own name wins over an alias; an empty value counts as unset. Booleans accept 1/0,
# true/false and yes/no in any case. Errors print one line `error: ...` on stderr and exit with status 2.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --help (or -h) as the script's first argument prints its header comment, which lists its settings.
if [[ "${1:-}" == --help || "${1:-}" == -h ]]; then
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[1]}"
    exit 0
fi
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

declare -A SETTING_ALIASES=(
    [MAX_SEQ_LENGTH]="SEQ" [TRAIN_BATCH_SIZE]="BATCH_SIZE BATCH" [EVAL_BATCH_SIZE]="EVAL_BATCH"
    [LEARNING_RATE]="LR" [NUM_TRAIN_EPOCHS]="EPOCHS" [NUM_TRAIN_STEPS]="TRAIN_STEPS"
    [NUM_WARMUP_STEPS]="WARMUP_STEPS" [WARMUP_PROPORTION]="WARMUP" [MAX_EVAL_STEPS]="EVAL_STEPS"
    [SAVE_CHECKPOINTS_STEPS]="SAVE_STEPS" [SEED]="RANDOM_SEED" [GRADIENT_ACCUMULATION_STEPS]="GRAD_ACCUM ACCUM_STEPS"
    [NPROC]="NUM_PROC" [MAX_PREDICTIONS_PER_SEQ]="MAX_PRED MAX_PREDICTIONS" [DATA_DIR]="TASK_DIR"
    [VOCAB_FILE]="VOCAB" [BERT_CONFIG_FILE]="BERT_CONFIG" [USE_FP16]="FP16" [DO_LOWER_CASE]="LOWER_CASE"
    [DO_WHOLE_WORD_MASK]="WHOLE_WORD_MASK" [AUG_TRAIN]="AUG" [CONTINUE_TRAIN]="CONTINUE"
    [STAGE1_NUM_TRAIN_EPOCHS]="STAGE1_EPOCHS" [STAGE2_NUM_TRAIN_EPOCHS]="STAGE2_EPOCHS"
    [STAGE1_LEARNING_RATE]="STAGE1_LR" [STAGE2_LEARNING_RATE]="STAGE2_LR"
)

# fail MESSAGE...: the user's error, as one line on stderr, and exit status 2.
fail() {
    echo "error: $*" >&2
    exit 2
}

# setting NAME DEFAULT [ALIAS...]: NAME from the environment, else from its first set alias (the table
# above, then the ones given), else DEFAULT. SETTING_FROM[NAME] is the variable it came from.
declare -A SETTING_FROM=()
setting() {
    local name=$1 default=$2 alias
    shift 2
    for alias in "$name" ${SETTING_ALIASES[$name]:-} "$@"; do
        if [[ -n "${!alias:-}" ]]; then
            printf -v "$name" '%s' "${!alias}"
            SETTING_FROM[$name]=$alias
            return 0
        fi
    done
    printf -v "$name" '%s' "$default"
    SETTING_FROM[$name]=$name
}

# bool_setting NAME DEFAULT [ALIAS...]: a setting, normalised to true or false.
bool_setting() {
    setting "$@"
    local name=$1
    case "${!name,,}" in
        1 | true | yes) printf -v "$name" true ;;
        0 | false | no) printf -v "$name" false ;;
        *) fail "${SETTING_FROM[$name]}=${!name}: expected a boolean (1/0, true/false or yes/no)" ;;
    esac
}

# need_file PATH WHAT..., need_dir PATH WHAT...: stop unless PATH is a file (a directory); WHAT says what was
# expected there and how to get it.
need_file() {
    [[ -f "$1" ]] || fail "$1: ${*:2}"
}

need_dir() {
    [[ -d "$1" ]] || fail "$1: ${*:2}"
}

# need_checkpoint CHECKPOINT MODEL_DIR: a TF checkpoint prefix with CHECKPOINT.index, a directory (its newest
# checkpoint), or `none` (random weights, in any case).
need_checkpoint() {
    local checkpoint=$1 model_dir=$2
    [[ "${checkpoint,,}" == none || -d "$checkpoint" || -f "$checkpoint.index" ]] && return 0
    fail "$checkpoint: checkpoint not found (expected $checkpoint.index). Put the released NEZHA files" \
        "(model.ckpt.index, model.ckpt.data-00000-of-00001) in $model_dir, set INIT_CHECKPOINT, or set" \
        "INIT_CHECKPOINT=none to train from random weights"
}

# process_count: the NPROC setting (default 1), checked to be a number of processes.
process_count() {
    setting NPROC 1
    [[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || fail "${SETTING_FROM[NPROC]}=$NPROC: expected a number of processes (1 or more)"
}

# torch_launcher: LAUNCH, the command that starts a TinyBERT entry: torchrun with NPROC processes (DDP, NCCL
# on GPUs, gloo on CPU) when NPROC > 1, else the plain interpreter.
torch_launcher() {
    process_count
    if ((NPROC > 1)); then
        LAUNCH=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC")
    else
        LAUNCH=("$PYTHON")
    fi
}

# model_settings: MODEL_DIR (default the released model's place, NEZHA-TensorFlow/nezha) and the
# BERT_CONFIG_FILE and VOCAB_FILE in it.
model_settings() {
    setting MODEL_DIR "$ROOT/NEZHA-TensorFlow/nezha"
    setting BERT_CONFIG_FILE "$MODEL_DIR/bert_config.json"
    setting VOCAB_FILE "$MODEL_DIR/vocab.txt"
}

# finetune_and_select ENTRY ARG...: the flow of the original's run_clf.sh and run_seq_labelling.sh. ENTRY
# (run_classifier.py, run_classifier_ner.py) trains on DATA_DIR with the settings, evaluating every saved
# checkpoint on dev; select_best.py then picks the best one by the task's metric and predicts the test set
# with it (run_clf_predict.sh, run_seq_labelling_predict.sh). The ARGs go to ENTRY.
finetune_and_select() {
    local entry=$1
    shift
    "$PYTHON" "$ROOT/NEZHA-TensorFlow/$entry" \
        --task_name="$TASK_NAME" --do_train=true --do_eval=true --do_train_and_eval=true \
        --data_dir="$DATA_DIR" --save_checkpoints_steps="$SAVE_CHECKPOINTS_STEPS" \
        --vocab_file="$VOCAB_FILE" --bert_config_file="$BERT_CONFIG_FILE" --init_checkpoint="$INIT_CHECKPOINT" \
        --max_seq_length="$MAX_SEQ_LENGTH" --train_batch_size="$TRAIN_BATCH_SIZE" \
        --eval_batch_size="$EVAL_BATCH_SIZE" --num_train_epochs="$NUM_TRAIN_EPOCHS" \
        --learning_rate="$LEARNING_RATE" --max_train_examples="$MAX_TRAIN_EXAMPLES" \
        --max_eval_examples="$MAX_EVAL_EXAMPLES" --output_dir="$OUTPUT_DIR" "$@"
    "$PYTHON" "$ROOT/NEZHA-TensorFlow/select_best.py" \
        --task_name="$TASK_NAME" --task_data_dir="$DATA_DIR" --max_seq_length="$MAX_SEQ_LENGTH" \
        --predict_batch_size="$PREDICT_BATCH_SIZE" --pretrained_model_dir="$MODEL_DIR" \
        --task_output_dir="$OUTPUT_DIR"
}

# predict_settings TASK_NAME DATA_DIR OUTPUT_DIR MAX_SEQ_LENGTH PREDICT_BATCH_SIZE -- ARG...: the settings of
# a *_predict.sh script, with these defaults. The original's positional arguments (TASK_NAME DATA_DIR
# MODEL_DIR CHECKPOINT MAX_SEQ_LENGTH PREDICT_BATCH_SIZE OUTPUT_DIR) win over the environment; CHECKPOINT is
# INIT_CHECKPOINT, by default OUTPUT_DIR (its newest checkpoint).
predict_settings() {
    local -a defaults=("$1" "$2" "$3" "$4" "$5") names=(TASK_NAME DATA_DIR MODEL_DIR INIT_CHECKPOINT
        MAX_SEQ_LENGTH PREDICT_BATCH_SIZE OUTPUT_DIR)
    shift 6
    local i
    for i in "${!names[@]}"; do
        if [[ -n "${*:i+1:1}" ]]; then printf -v "${names[i]}" '%s' "${*:i+1:1}"; fi
    done
    setting TASK_NAME "${defaults[0]}"
    setting DATA_DIR "${defaults[1]}"
    model_settings
    setting OUTPUT_DIR "${defaults[2]}"
    setting INIT_CHECKPOINT "$OUTPUT_DIR"
    setting MAX_SEQ_LENGTH "${defaults[3]}"
    setting PREDICT_BATCH_SIZE "${defaults[4]}"
    need_checkpoint "$INIT_CHECKPOINT" "$MODEL_DIR"
}
