"""NEZHA/BERT pretraining: masked LM + next sentence prediction on the TFRecords of
utils/create_pretraining_data.py (the original's run_pretraining.py without tf.estimator).

One process per device; `--horovod` (horovodrun / mpirun) or `--distribution=multi_worker` (TF_CONFIG) for
data parallelism, as distribution.py describes. Each step: forward on this rank's batch, gradients (scaled
under fp16), mean all-reduce, unscale, clip to global norm 1.0, LAMB or AdamWeightDecay, global_step + 1
(optimization.TrainStep). Checkpoints `output_dir/model.ckpt-N` hold the model under the original TF1 names
plus the optimiser slots (`<var>/lamb_m|lamb_v` or `adam_m|adam_v`), `global_step` and the loss-scale state;
a run restarts from the newest complete one in output_dir by itself, else from --init_checkpoint.
Only rank 0 restores (then broadcasts), writes checkpoints, summaries and eval_results.txt.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
import typing
from typing import Any, Optional

import tensorflow as tf
from absl import flags, logging
from tensorflow.core.framework import summary_pb2
from tqdm import tqdm

import checkpoint
import distribution
import modeling
import optimization
import pretraining_data
from utils import absl_cli
from utils.errors import InputError, exit_on_input_error
from utils.fileio import write_key_values

FLAGS = flags.FLAGS
EVAL_RESULTS = "eval_results.txt"
REPORT_FORMAT = "Step = %6i Throughput = %11.1f MLM Loss = %10.4e NSP Loss = %10.4e Loss = %6.3f LR = %6.4e"


def _option(help_text: str, default: Any = dataclasses.MISSING, **extra: Any) -> Any:
    """A field of Options that is also a flag: its default and help, written once."""
    return dataclasses.field(default=default, metadata={"help": help_text, **extra})


@dataclasses.dataclass
class Options:
    """The run's settings: the original's flags (same names and defaults) and the new ones. Each field is a
    flag of the same name, default and help (define_flags); a field without a default is a required flag."""

    bert_config_file: str = _option("The config json file corresponding to the pre-trained BERT model. This "
                                    "specifies the model architecture.")
    input_file: str = _option("Input TF example files (can be a glob or comma separated).")
    output_dir: str = _option("The output directory where the model checkpoints will be written.")
    init_checkpoint: Optional[str] = _option("Initial checkpoint (usually from a pre-trained BERT model), used "
                                             "when output_dir holds no checkpoint to resume from.", None)
    max_seq_length: int = _option("The maximum total input sequence length after WordPiece tokenization. Must "
                                  "match the data file.", 128)
    max_predictions_per_seq: int = _option("Maximum number of masked LM predictions per sequence. Must match the "
                                           "data file.", 20)
    do_train: bool = _option("Whether to run training.", True)
    do_eval: bool = _option("Whether to run eval on the dev set.", False)
    train_batch_size: int = _option("Total batch size for training (per rank).", 32)
    eval_batch_size: int = _option("Total batch size for eval.", 8)
    learning_rate: float = _option("The initial learning rate (times the number of ranks).", 5e-5)
    num_train_steps: int = _option("Number of training steps.", 100000)
    num_warmup_steps: int = _option("Number of warmup steps.", 10000)
    save_checkpoints_steps: int = _option("How often to save the model checkpoint.", 1000)
    iterations_per_loop: int = _option("Accepted for compatibility; unused, as in the original.", 1000)
    max_eval_steps: int = _option("Maximum number of eval steps.", 100)
    report_loss: bool = _option("Whether to report total loss during training.", False)
    manual_fp16: bool = _option("Whether to use fp32 or fp16 arithmetic on GPU. Manual casting is done instead "
                                "of using AMP.", False)
    use_xla: bool = _option("Whether to enable XLA JIT compilation.", False)
    use_fp16: bool = _option("Whether to use fp16 (float16 compute, float32 master weights, dynamic loss "
                             "scaling).", False)
    optimizer: str = _option("The optimizer: lamb or adam (AdamWeightDecay).", "lamb", choices=("lamb", "adam"))
    # New.
    use_bf16: bool = _option("New: bfloat16 compute with float32 master weights (no loss scaling).", False)
    gradient_accumulation_steps: int = _option("New: micro-batches of train_batch_size summed into one optimizer "
                                               "step.", 1)
    keep_checkpoint_max: int = _option("New: newest checkpoints kept (0 = all); the Estimator's default was 5.", 5)
    display_every: int = _option("New: --report_loss prints at step 1 and every this many steps (the original's "
                                 "hook used 100).", 100)
    save_summary_steps: int = _option("New: TensorBoard summaries every this many steps (the Estimator's "
                                      "default).", 100)
    seed: Optional[int] = _option("New: seed of the initialisation, dropout and input order (unset: "
                                  "nondeterministic, as the original); --random_seed is the same flag.", None)


_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_bool}


def _flag_type(hint: Any) -> type:
    """str for `str` and `Optional[str]`, and so on."""
    return next(t for t in typing.get_args(hint) if t is not type(None)) if typing.get_args(hint) else hint


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """A flag for every field of Options, --horovod/--distribution, and --random_seed for --seed."""
    hints = typing.get_type_hints(Options)
    for field in dataclasses.fields(Options):
        default = None if field.default is dataclasses.MISSING else field.default
        if "choices" in field.metadata:
            flags.DEFINE_enum(field.name, default, list(field.metadata["choices"]), field.metadata["help"],
                              flag_values=flag_values)
        else:
            _DEFINE[_flag_type(hints[field.name])](field.name, default, field.metadata["help"],
                                                   flag_values=flag_values)
    flags.DEFINE_alias("random_seed", "seed", flag_values=flag_values)
    distribution.define_flags(flag_values)


# ------------------------------------------------------------------------------------------------ losses

def masked_lm_loss(logits: tf.Tensor, label_ids: tf.Tensor, label_weights: tf.Tensor
                   ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The original's get_masked_lm_output: (sum(w * loss) / (sum(w) + 1e-5), per-position loss [B, P],
    log_probs [B, P, V]). -log_probs at the label equals its -sum(one_hot * log_probs)."""
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    per_example_loss = -tf.gather(log_probs, label_ids, batch_dims=2)
    label_weights = tf.cast(label_weights, tf.float32)
    loss = tf.reduce_sum(label_weights * per_example_loss) / (tf.reduce_sum(label_weights) + 1e-5)
    return loss, per_example_loss, log_probs


def next_sentence_loss(logits: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The original's get_next_sentence_output: (mean loss, per-example loss [B], log_probs [B, 2])."""
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    per_example_loss = -tf.gather(log_probs, tf.reshape(labels, [-1]), batch_dims=1)
    return tf.reduce_mean(per_example_loss), per_example_loss, log_probs


def pretraining_losses(model: modeling.BertForPreTraining, batch: dict[str, tf.Tensor], training: bool) -> dict:
    """masked_lm_loss + next_sentence_loss = total_loss, and what the eval metrics need."""
    outputs = model(batch["input_ids"], batch["input_mask"], batch["segment_ids"], batch["masked_lm_positions"],
                    training=training)
    mlm, mlm_per_example, mlm_log_probs = masked_lm_loss(outputs.masked_lm_logits, batch["masked_lm_ids"],
                                                         batch["masked_lm_weights"])
    nsp, nsp_per_example, nsp_log_probs = next_sentence_loss(outputs.next_sentence_logits,
                                                             batch["next_sentence_labels"])
    return {"total_loss": mlm + nsp, "masked_lm_loss": mlm, "next_sentence_loss": nsp,
            "mlm_per_example": mlm_per_example, "mlm_log_probs": mlm_log_probs,
            "nsp_per_example": nsp_per_example, "nsp_log_probs": nsp_log_probs}


# ------------------------------------------------------------------------------------------------ the run

def compute_dtype(options: Options) -> tf.dtypes.DType:
    if options.use_bf16 and (options.use_fp16 or options.manual_fp16):
        raise InputError("--use_bf16 contradicts --use_fp16/--manual_fp16: choose one precision")
    if options.use_fp16 or options.manual_fp16:
        return tf.float16
    if options.use_bf16:
        distribution.require_bfloat16()
        return tf.bfloat16
    return tf.float32


class Pretrainer:
    """The model, its optimiser and train step, and the checkpointed state of one rank."""

    def __init__(self, config: modeling.BertConfig, options: Options, engine: distribution.Engine):
        self.options = options
        self.engine = engine
        self.model = modeling.BertForPreTraining(config, compute_dtype=compute_dtype(options))
        self.model_variables = checkpoint.named_variables(self.model)
        learning_rate = engine.scale_learning_rate(options.learning_rate)
        self.optimizer = optimization.create_optimizer(learning_rate, options.num_train_steps,
                                                       options.num_warmup_steps, options.optimizer)
        self.train_step = optimization.build_train_step(
            self._loss, list(self.model_variables.values()), self.optimizer, engine=engine,
            loss_scaling=options.use_fp16 or options.manual_fp16,
            gradient_accumulation_steps=options.gradient_accumulation_steps, use_xla=options.use_xla)

    def _loss(self, batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        losses = pretraining_losses(self.model, batch, training=True)
        return losses["total_loss"], {"masked_lm_loss": losses["masked_lm_loss"],
                                      "next_sentence_loss": losses["next_sentence_loss"]}

    @property
    def global_step(self) -> int:
        return int(self.train_step.global_step.numpy())

    def state(self) -> dict[str, tf.Variable]:
        """What a checkpoint holds: the model, optimiser slots, global_step and loss-scale state (TF1 names)."""
        tensors = dict(self.model_variables)
        tensors.update(self.train_step.state_variables())
        return tensors

    def restore(self) -> Optional[str]:
        """Resume from output_dir's newest complete checkpoint, else start from --init_checkpoint (model only);
        rank 0 reads, every rank then receives rank 0's values. Returns the checkpoint used."""
        prefix = None
        if self.engine.is_chief:
            prefix = self._restore_on_chief()
        by_dtype: dict[tf.dtypes.DType, list[tf.Variable]] = {}
        for variable in self.state().values():
            by_dtype.setdefault(variable.dtype, []).append(variable)
        for variables in by_dtype.values():  # one collective per dtype: a batched all-reduce needs one dtype
            self.engine.broadcast_variables(variables)
        return prefix

    def _restore_on_chief(self) -> Optional[str]:
        options = self.options
        latest = checkpoint.latest_checkpoint(options.output_dir) if os.path.isdir(options.output_dir) else None
        if latest is not None:
            report = checkpoint.load_checkpoint(latest, self.state())
            if not any(name in self.model_variables for name in report.loaded):
                raise InputError("this checkpoint in output_dir holds none of the model's variables; "
                                 "move it away or choose another output_dir", latest)
            logging.info("resuming from %s at global step %d", latest, self.global_step)
            return latest
        if options.init_checkpoint:
            report = checkpoint.load_checkpoint(options.init_checkpoint, self.model_variables)
            if not report.loaded:
                raise InputError("none of the model's variables is in this checkpoint (is it a BERT/NEZHA "
                                 "checkpoint with the original names?)", report.prefix)
            return report.prefix
        return None

    def save(self) -> str:
        return checkpoint.save_checkpoint(self.options.output_dir, self.state(), step=self.global_step,
                                          max_to_keep=self.options.keep_checkpoint_max)


def _input_error(err: tf.errors.OpError, files: list[str]) -> InputError:
    return InputError(f"reading the pretraining records failed ({type(err).__name__}: "
                      f"{err.message.strip().splitlines()[0]})", ",".join(files))


def _report(global_step: int, examples_per_s: float, result: dict, loss_scaling: bool) -> str:
    line = REPORT_FORMAT % (global_step, examples_per_s, float(result["masked_lm_loss"]),
                            float(result["next_sentence_loss"]), float(result["loss"]),
                            float(result["learning_rate"]))
    if loss_scaling:
        line += " Loss scale = %6.4e" % float(result["loss_scale"])
    return line


def train(trainer: Pretrainer, files: list[str]) -> int:
    """Train from the current global step to num_train_steps; return the final global step."""
    options, engine = trainer.options, trainer.engine
    chief = engine.is_chief
    step = trainer.train_step
    loss_scaling = step.loss_scale is not None
    dataset = pretraining_data.train_dataset(engine.shard_files(files), options.train_batch_size,
                                             options.max_seq_length, options.max_predictions_per_seq,
                                             seed=options.seed)
    iterator = iter(dataset)
    examples_per_step = options.train_batch_size * options.gradient_accumulation_steps * engine.size
    logging.info("***** Running training *****")
    logging.info("  global batch size = %d (%d per rank x %d accumulation steps x %d ranks)", examples_per_step,
                 options.train_batch_size, options.gradient_accumulation_steps, engine.size)
    writer = tf.summary.create_file_writer(options.output_dir) if chief else None
    global_step = trainer.global_step
    saved = global_step
    window_start, window_examples = time.perf_counter(), 0
    progress = tqdm(total=options.num_train_steps, initial=global_step, desc="pretraining", unit="step",
                    disable=not chief, file=sys.stderr, dynamic_ncols=True)
    try:
        while global_step < options.num_train_steps:
            try:
                result = step(iterator)
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
                raise _input_error(err, files) from None
            window_examples += examples_per_step
            new_step = int(result["global_step"])
            if new_step == global_step:
                continue  # non-finite gradients under loss scaling: the update was skipped
            progress.update(new_step - global_step)
            global_step = new_step
            if not chief:
                continue
            now = time.perf_counter()
            examples_per_s = window_examples / max(now - window_start, 1e-9)
            progress.set_postfix(loss=f"{float(result['loss']):.3f}", refresh=False)
            if global_step == 1 or global_step % options.display_every == 0:
                if options.report_loss:
                    tqdm.write(_report(global_step, examples_per_s, result, loss_scaling), file=sys.stdout)
                window_start, window_examples = now, 0
            if global_step == 1 or global_step % options.save_summary_steps == 0:
                _write_train_summaries(writer, global_step, result, examples_per_s, loss_scaling)
            if options.save_checkpoints_steps > 0 and global_step % options.save_checkpoints_steps == 0:
                trainer.save()
                saved = global_step
        if chief and saved != global_step:
            trainer.save()
    finally:
        progress.close()
        if writer is not None:
            writer.close()
    return global_step


# TensorBoard's scalar plugin marker: tf.summary.write needs no tensorboard package (tf.summary.scalar does).
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()


def write_scalars(writer: tf.summary.SummaryWriter, step: int, values: dict[str, Any]) -> None:
    """TensorBoard scalar summaries (float32), readable by TensorBoard and tf.compat.v1 summary_iterator."""
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.write(name, tf.cast(value, tf.float32), metadata=_SCALAR_METADATA)
    writer.flush()


def _write_train_summaries(writer: tf.summary.SummaryWriter, global_step: int, result: dict,
                           examples_per_s: float, loss_scaling: bool) -> None:
    values = {"loss": result["loss"], "mlm_loss": result["masked_lm_loss"],
              "nsp_loss": result["next_sentence_loss"], "learning_rate": result["learning_rate"],
              "examples_per_sec": examples_per_s}
    if loss_scaling:
        values["loss_scale"] = result["loss_scale"]
    write_scalars(writer, global_step, values)


def evaluate(trainer: Pretrainer, files: list[str]) -> dict[str, Any]:
    """The original's metrics over max_eval_steps batches of every input file, written (sorted `key = value`
    lines) to output_dir/eval_results.txt: masked_lm_accuracy and masked_lm_loss weighted by
    masked_lm_weights, next_sentence_accuracy and next_sentence_loss, loss (mean total loss of the batches)
    and global_step."""
    options, model = trainer.options, trainer.model

    @tf.function(jit_compile=options.use_xla)
    def sums(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        losses = pretraining_losses(model, batch, training=False)
        weights = tf.cast(batch["masked_lm_weights"], tf.float32)
        mlm_correct = tf.cast(tf.equal(tf.argmax(losses["mlm_log_probs"], axis=-1, output_type=tf.int32),
                                       batch["masked_lm_ids"]), tf.float32)
        labels = tf.reshape(batch["next_sentence_labels"], [-1])
        nsp_correct = tf.cast(tf.equal(tf.argmax(losses["nsp_log_probs"], axis=-1, output_type=tf.int32),
                                       labels), tf.float32)
        return {"mlm_correct": tf.reduce_sum(weights * mlm_correct), "mlm_weight": tf.reduce_sum(weights),
                "mlm_loss": tf.reduce_sum(weights * losses["mlm_per_example"]),
                "nsp_correct": tf.reduce_sum(nsp_correct), "nsp_count": tf.cast(tf.size(labels), tf.float32),
                "nsp_loss": tf.reduce_sum(losses["nsp_per_example"]), "total_loss": losses["total_loss"]}

    dataset = pretraining_data.eval_dataset(files, options.eval_batch_size, options.max_seq_length,
                                            options.max_predictions_per_seq)
    logging.info("***** Running evaluation *****")
    logging.info("  Batch size = %d, steps = %d", options.eval_batch_size, options.max_eval_steps)
    totals: dict[str, float] = {}
    batches = 0
    try:
        for batch in tqdm(dataset.take(options.max_eval_steps), total=options.max_eval_steps, desc="evaluating",
                          unit="batch", file=sys.stderr):
            for key, value in sums(batch).items():
                totals[key] = totals.get(key, 0.0) + float(value)
            batches += 1
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        raise _input_error(err, files) from None
    if not batches:
        raise InputError(f"fewer records than one eval batch ({options.eval_batch_size})", ",".join(files))
    results = {
        "masked_lm_accuracy": totals["mlm_correct"] / max(totals["mlm_weight"], 1e-12),
        "masked_lm_loss": totals["mlm_loss"] / max(totals["mlm_weight"], 1e-12),
        "next_sentence_accuracy": totals["nsp_correct"] / totals["nsp_count"],
        "next_sentence_loss": totals["nsp_loss"] / totals["nsp_count"],
        "loss": totals["total_loss"] / batches,
        "global_step": trainer.global_step,
    }
    write_key_values(os.path.join(options.output_dir, EVAL_RESULTS), results)
    writer = tf.summary.create_file_writer(os.path.join(options.output_dir, "eval"))
    write_scalars(writer, trainer.global_step, {k: v for k, v in results.items() if k != "global_step"})
    writer.close()
    logging.info("***** Eval results *****")
    for key in sorted(results):
        logging.info("  %s = %s", key, results[key])
    return results


def check_options(options: Options, config: modeling.BertConfig) -> None:
    if not options.do_train and not options.do_eval:
        raise InputError("At least one of `do_train` or `do_eval` must be True.")
    if options.max_seq_length < 5:
        raise InputError(f"--max_seq_length must be at least 5, got {options.max_seq_length}")
    if not config.use_relative_position and options.max_seq_length > config.max_position_embeddings:
        raise InputError(f"Cannot use sequence length {options.max_seq_length} because the BERT model was only "
                         f"trained up to sequence length {config.max_position_embeddings}",
                         options.bert_config_file)
    for name in ("train_batch_size", "eval_batch_size", "num_train_steps", "max_eval_steps", "display_every",
                 "save_summary_steps", "max_predictions_per_seq"):
        if getattr(options, name) < 1:
            raise InputError(f"--{name} must be positive, got {getattr(options, name)}")
    if options.num_warmup_steps < 0 or options.save_checkpoints_steps < 0 or options.keep_checkpoint_max < 0:
        raise InputError("--num_warmup_steps, --save_checkpoints_steps and --keep_checkpoint_max must not be "
                         "negative")
    if options.use_xla and options.manual_fp16:
        logging.warning("--use_xla with --manual_fp16: XLA compiles the float16 graph as it is "
                        "(the original warned about this combination too)")


def run(options: Options, engine: Optional[distribution.Engine] = None) -> dict[str, Any]:
    """Train and/or evaluate as the options say; returns {"global_step", "checkpoint", "eval_results"}."""
    engine = engine or distribution.Engine()
    config = modeling.BertConfig.from_json_file(options.bert_config_file)
    check_options(options, config)
    files = pretraining_data.expand_input_files(options.input_file)
    if options.do_train:
        pretraining_data.check_records(engine.shard_files(files), options.max_seq_length,
                                       options.max_predictions_per_seq, config.vocab_size)
    if options.do_eval and engine.is_chief:
        pretraining_data.check_records(files, options.max_seq_length, options.max_predictions_per_seq,
                                       config.vocab_size)
    if options.seed is not None:
        tf.random.set_seed(options.seed + engine.rank)
    trainer = Pretrainer(config, options, engine)
    if engine.is_chief:
        os.makedirs(options.output_dir, exist_ok=True)
    restored = trainer.restore()
    if options.do_eval and not options.do_train and restored is None and engine.is_chief:
        raise InputError("nothing to evaluate: no checkpoint in output_dir and no --init_checkpoint",
                         options.output_dir)
    summary: dict[str, Any] = {"global_step": trainer.global_step, "checkpoint": restored, "eval_results": None}
    if options.do_train:
        summary["global_step"] = train(trainer, files)
        summary["checkpoint"] = checkpoint.latest_checkpoint(options.output_dir) if engine.is_chief else None
    if options.do_eval and engine.is_chief:
        summary["eval_results"] = evaluate(trainer, files)
    return summary


def options_from_flags() -> Options:
    return Options(**{field.name: getattr(FLAGS, field.name) for field in dataclasses.fields(Options)})


@exit_on_input_error
def main(argv: list[str]) -> None:
    del argv
    engine = distribution.create_engine(FLAGS.distribution, FLAGS.horovod)
    for name in ("bert_config_file", "input_file", "output_dir"):
        if getattr(FLAGS, name) is None:
            raise InputError(f"--{name} is required")
    run(options_from_flags(), engine)


if __name__ == "__main__":
    define_flags()
    absl_cli.run(main)
