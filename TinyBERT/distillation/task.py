"""Task-specific distillation and evaluation, the loop of TinyBERT's task_distill.py with its bugs fixed.

Stage 1 (intermediate layers): loss = att_loss + rep_loss against a fine-tuned teacher, constant learning
rate, the student saved at every evaluation step and once more at the end. Stage 2 (--pred_distill): soft
cross-entropy to the teacher's logits at temperature T (MSE to the gold scores for regression), warmup-linear
schedule, the dev set evaluated every eval_step optimizer steps and at the end, the best student by the
task's primary metric kept. Results are appended to output_dir/eval_results.txt as `key = value` blocks.

Under torchrun the student is wrapped in DDP and --train_batch_size stays the total batch, as it was for
the original's single-process DataParallel: every rank trains on its share of the batches one process would draw, and
only rank 0 evaluates and writes.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, SequentialSampler
from tqdm import tqdm, trange

from transformer.checkpoints import find_config_file
from transformer.modeling import BertConfig, ClassifierOutput, TinyBertForSequenceClassification
from transformer.optimization import BertAdam
from utils.errors import InputError
from utils.fileio import atomic_open, write_key_values
from utils.metrics import compute_metrics, primary_metric
from utils.tasks import DataProcessor, InputExample, get_processor
from utils.tokenization import FullTokenizer

from .losses import intermediate_losses, soft_cross_entropy
from .runtime import (GlobalBatchSampler, MixedPrecision, OptimizerStep, Runtime, check_batch_flags,
                      check_output_dir, freeze, seed_everything, setup_runtime, weight_decay_groups)
from .task_data import (config_label_names, config_num_labels, convert_examples_to_features, get_tensor_data,
                        label_permutation)

logger = logging.getLogger(__name__)

RESULTS_NAME = "eval_results.txt"
PREDICTIONS_NAME = "eval_predictions.tsv"
LOG_FILE_NAME = "debug_layer_loss.log"
_HANDLERS: list[logging.Handler] = []


@dataclass
class TaskModel:
    """A classifier and the column order that puts its logits in the task's label order (None: already is)."""

    model: nn.Module
    permutation: Optional[list[int]]
    path: str

    def logits(self, input_ids, segment_ids, input_mask, is_student: bool = False) -> ClassifierOutput:
        output = self.model(input_ids, segment_ids, input_mask, is_student=is_student)
        if self.permutation is not None:
            output = output._replace(logits=output.logits[:, self.permutation])
        return output


def _local_config(path: str) -> Optional[dict[str, Any]]:
    if not os.path.isdir(path):
        return None
    return BertConfig.from_json_file(find_config_file(path)).to_dict()


def load_task_model(
    path: str,
    task_name: str,
    label_list: Sequence[Optional[str]],
    role: str,
    fit_size: Optional[int] = None,
    require_classifier: bool = False,
) -> TaskModel:
    """TinyBertForSequenceClassification from `path`, checked against the task's labels.

    The label count a config declares must be the task's; a config with id2label names gives the order
    in which its logits are read (a Hugging Face MNLI teacher orders the labels differently from GLUE's
    processor). A teacher must have classifier weights: a pre-trained but not fine-tuned BERT is refused.
    """
    num_labels = len(label_list)
    config = _local_config(path)
    permutation = None
    if config is not None:
        declared = config_num_labels(config)
        if declared is not None and declared != num_labels:
            raise InputError(f"the {role} has {declared} labels but task {task_name} has {num_labels} "
                             f"({list(label_list)})", path)
        permutation = label_permutation(config_label_names(config), label_list, path)
    try:
        model, info = TinyBertForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, fit_size=fit_size, output_loading_info=True)
    except InputError as err:
        if "'classifier." in err.message:
            raise InputError(f"the {role}'s classifier does not have task {task_name}'s {num_labels} labels "
                             f"({err.message})", err.path) from None
        raise
    if require_classifier and "classifier.weight" in info["missing_keys"]:
        raise InputError(f"the {role} has no classifier weights: it must be a model fine-tuned on the task", path)
    if permutation is not None:
        logger.info("%s logits reordered by %s to the task's label order %s", role, permutation, list(label_list))
    return TaskModel(model, permutation, path)


def label_config(config: BertConfig, label_list: Sequence[Optional[str]]) -> None:
    """Give a saved student id2label/label2id in the task's order, unless its config already names its labels."""
    if label_list == [None] or config_label_names(config.to_dict()) is not None:
        return
    config.id2label = {str(i): str(label) for i, label in enumerate(label_list)}
    config.label2id = {str(label): i for i, label in enumerate(label_list)}


def freeze_unused(model: TinyBertForSequenceClassification, pred_distill: bool) -> None:
    """What a stage's loss never reaches: stage 1 trains neither the pooler nor the classifier, stage 2 not
    fit_dense."""
    freeze((model.fit_dense,) if pred_distill else (model.bert.pooler, model.classifier))


def tensor_data(examples: Sequence[InputExample], processor: DataProcessor, label_list, tokenizer,
                max_seq_length: int):
    features = convert_examples_to_features(examples, label_list, max_seq_length, tokenizer, processor.output_mode)
    return get_tensor_data(processor.output_mode, features)


def train_loader(data, batch_size: int, runtime: Runtime) -> DataLoader:
    """This rank's share of every full batch of batch_size (the original skipped each smaller batch)."""
    return DataLoader(data, batch_sampler=GlobalBatchSampler(len(data), batch_size, runtime))


def eval_loader(data, batch_size: int) -> DataLoader:
    return DataLoader(data, sampler=SequentialSampler(data), batch_size=batch_size)


@dataclass
class EvalOutput:
    result: dict[str, float]
    logits: np.ndarray
    labels: np.ndarray


@torch.no_grad()
def evaluate(task_model: TaskModel, task_name: str, loader: DataLoader, output_mode: str,
             device: torch.device, precision: MixedPrecision) -> EvalOutput:
    """The task's metrics and the mean per-batch eval_loss (cross-entropy, or MSE for regression)."""
    was_training = task_model.model.training
    task_model.model.eval()
    losses, all_logits, all_labels = [], [], []
    for batch in tqdm(loader, desc="Evaluating", leave=False):
        input_ids, input_mask, segment_ids, label_ids, _ = (t.to(device) for t in batch)
        with precision.autocast():
            logits = task_model.logits(input_ids, segment_ids, input_mask).logits
        logits = logits.float()
        if output_mode == "classification":
            losses.append(F.cross_entropy(logits, label_ids).item())
        else:
            losses.append(F.mse_loss(logits.view(-1), label_ids.view(-1)).item())
        all_logits.append(logits.cpu().numpy())
        all_labels.append(label_ids.cpu().numpy())
    task_model.model.train(was_training)
    logits = np.concatenate(all_logits)
    labels = np.concatenate(all_labels)
    preds = np.argmax(logits, axis=1) if output_mode == "classification" else np.squeeze(logits, axis=1)
    result = compute_metrics(task_name, preds, labels)
    result["eval_loss"] = float(np.mean(losses))
    return EvalOutput(result, logits, labels)


def write_predictions(path: str, examples: Sequence[InputExample], output: EvalOutput,
                      label_list: Sequence[Optional[str]], output_mode: str) -> None:
    """guid, gold, pred, probs (space-separated, in label_list order; empty for regression), one row per example."""
    with atomic_open(path) as handle:
        handle.write("guid\tgold\tpred\tprobs\n")
        if output_mode == "classification":
            probs = torch.softmax(torch.from_numpy(output.logits), dim=-1).numpy()
            for example, row in zip(examples, probs):
                pred = label_list[int(np.argmax(row))]
                handle.write(f"{example.guid}\t{example.label}\t{pred}\t{' '.join(f'{p:.6f}' for p in row)}\n")
        else:
            for example, value in zip(examples, output.logits[:, 0]):
                handle.write(f"{example.guid}\t{example.label}\t{value:.6f}\t\n")


@dataclass
class DistillSetup:
    """What one run needs beyond its flags: the task, its labels and tokenizer, where it runs, its dev sets."""

    processor: DataProcessor
    task_name: str
    label_list: list[Optional[str]]
    tokenizer: Any
    runtime: Runtime
    precision: MixedPrecision
    eval_set: Callable[[str], tuple[list[InputExample], DataLoader]]


@dataclass
class RunningLosses:
    """Per-epoch sums of the (unscaled) losses of every micro-batch, and their means."""

    sums: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("loss", "cls_loss", "att_loss", "rep_loss"), 0.0))
    batches: int = 0

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] += value
        self.batches += 1

    def means(self, runtime: Runtime) -> dict[str, float]:
        """The means of the epoch so far, averaged over the processes."""
        keys = list(self.sums)
        return dict(zip(keys, runtime.mean([self.sums[key] / max(self.batches, 1) for key in keys])))


def distillation_loss(student: TaskModel, teacher: TaskModel, batch: Sequence[torch.Tensor], device: torch.device,
                      pred_distill: bool, output_mode: str, temperature: float,
                      precision: MixedPrecision) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch's loss and its parts: att_loss + rep_loss (stage 1), or the prediction loss (--pred_distill).

    Stage 2: soft cross-entropy of student / T against teacher / T (the original's, no T^2), or for
    regression the MSE to the gold scores, as the original.
    """
    input_ids, input_mask, segment_ids, label_ids = (t.to(device) for t in batch[:4])
    with precision.autocast():
        student_out = student.logits(input_ids, segment_ids, input_mask, is_student=not pred_distill)
        with torch.no_grad():
            teacher_out = teacher.logits(input_ids, segment_ids, input_mask)
    values = {"att_loss": 0.0, "rep_loss": 0.0, "cls_loss": 0.0}
    if not pred_distill:
        att, rep = intermediate_losses(student_out, teacher_out)
        loss = att + rep
        values.update(att_loss=att.item(), rep_loss=rep.item())
    else:
        if output_mode == "classification":
            loss = soft_cross_entropy(student_out.logits / temperature, teacher_out.logits / temperature)
        else:
            loss = F.mse_loss(student_out.logits.float().view(-1), label_ids.view(-1))
        values["cls_loss"] = loss.item()
    values["loss"] = loss.item()
    return loss, values


@dataclass
class Outcome:
    """What a run returns: its results (a distillation summary, or the evaluation's metrics) and, after a
    distillation, this process's trained student."""

    results: dict[str, Any]
    student: Optional[nn.Module] = None


def distill(args: argparse.Namespace, setup: DistillSetup, train_examples: Sequence[InputExample]) -> Outcome:
    """Run one distillation stage; the summary holds global_step, the best metric and the examples/s of the
    training steps (evaluation and saving excluded).

    Dev sets are read lazily (stage 1 needs none); MNLI's mismatched set has its own loader (the original
    overwrote the matched one).
    """
    runtime, precision = setup.runtime, setup.precision
    output_mode = setup.processor.output_mode
    device = runtime.device
    teacher = load_task_model(args.teacher_model, setup.task_name, setup.label_list, "teacher",
                              require_classifier=True)
    student = load_task_model(args.student_model, setup.task_name, setup.label_list, "student",
                              fit_size=teacher.model.config.hidden_size)
    teacher.model.to(device).eval()  # the original left the teacher's dropout on
    student.model.to(device).train()
    label_config(student.model.config, setup.label_list)
    freeze_unused(student.model, args.pred_distill)
    trained = TaskModel(runtime.wrap(student.model), student.permutation, student.path)

    per_step_batch = args.train_batch_size // args.gradient_accumulation_steps
    if per_step_batch % runtime.world_size:
        raise InputError(f"--train_batch_size / --gradient_accumulation_steps = {per_step_batch} does not divide "
                         f"evenly over {runtime.world_size} processes")
    loader = train_loader(tensor_data(train_examples, setup.processor, setup.label_list, setup.tokenizer,
                                      args.max_seq_length), per_step_batch, runtime)
    if len(loader) == 0:
        raise InputError(f"the training set has {len(train_examples)} examples, fewer than one batch of "
                         f"{per_step_batch} (--train_batch_size / --gradient_accumulation_steps)")
    num_train_optimization_steps = (
        int(len(train_examples) / per_step_batch / args.gradient_accumulation_steps) * args.num_train_epochs)

    schedule = "warmup_linear" if args.pred_distill else "none"
    optimizer = BertAdam(weight_decay_groups(student.model), schedule=schedule, lr=args.learning_rate,
                         warmup=args.warmup_proportion, t_total=num_train_optimization_steps)
    update = OptimizerStep(trained.model, optimizer, precision, args.gradient_accumulation_steps)

    logger.info("***** Running training *****  examples = %d, batch size = %d, optimization steps = %s",
                len(train_examples), per_step_batch, num_train_optimization_steps)
    state = {"global_step": 0, "best": -math.inf, "evaluated_at": -1, "checkpoint_s": 0.0, "saved": False}
    output_dir = args.output_dir
    primary = primary_metric(setup.task_name)
    examples_seen = micro_steps = 0
    start = time.perf_counter()

    def checkpoint(losses: RunningLosses) -> None:
        begin = time.perf_counter()
        means = losses.means(runtime)
        if runtime.is_main:
            evaluate_and_save(means)
        state["evaluated_at"] = state["global_step"]
        state["checkpoint_s"] += time.perf_counter() - begin

    def evaluate_and_save(means: dict[str, float]) -> None:
        result: dict[str, Any] = {}
        if args.pred_distill:
            _, dev = setup.eval_set(setup.task_name)
            result = evaluate(student, setup.task_name, dev, output_mode, device, precision).result
        result.update(means)
        result["global_step"] = state["global_step"]
        logger.info("***** Eval results ***** %s", ", ".join(f"{k} = {v}" for k, v in sorted(result.items())))
        write_key_values(os.path.join(output_dir, RESULTS_NAME), result, append=True)
        if args.pred_distill:
            # The first evaluation is always kept (the original started from 0.0, so a CoLA student with a
            # negative MCC, or any WNLI student, was never saved); a NaN score never beats a number.
            score = -math.inf if math.isnan(result[primary]) else result[primary]
            if state["saved"] and score <= state["best"]:
                return
            state["best"] = score
        state["saved"] = True
        logger.info("***** Save model *****")
        student.model.save_pretrained(output_dir, setup.tokenizer)
        if args.pred_distill and setup.task_name == "mnli":
            _, dev = setup.eval_set("mnli-mm")
            mm = evaluate(student, "mnli-mm", dev, output_mode, device, precision).result
            mm["global_step"] = state["global_step"]
            write_key_values(os.path.join(output_dir + "-MM", RESULTS_NAME), mm, append=True)

    losses = RunningLosses()
    for _ in trange(int(args.num_train_epochs), desc="Epoch", disable=not runtime.is_main):
        losses = RunningLosses()
        for step, batch in enumerate(tqdm(loader, desc="Iteration", ascii=True, disable=not runtime.is_main)):
            with update.sync(step), runtime.own_dropout(args.seed, micro_steps):
                loss, values = distillation_loss(trained, teacher, batch, device, args.pred_distill, output_mode,
                                                 args.temperature, precision)
                update.backward(loss)
            micro_steps += 1
            losses.add(**values)
            examples_seen += batch[0].size(0) * runtime.world_size
            if update.ends_step(step):
                update.step()
                state["global_step"] += 1
                if state["global_step"] % args.eval_step == 0:
                    checkpoint(losses)
    if state["evaluated_at"] != state["global_step"]:
        checkpoint(losses)
    runtime.barrier()
    training_s = time.perf_counter() - start - state["checkpoint_s"]
    summary = {"global_step": state["global_step"], "best": state["best"], "examples": examples_seen,
               "training_s": training_s, "examples_per_s": examples_seen / training_s if training_s > 0 else 0.0}
    return Outcome(summary, student.model)


def run_eval(args: argparse.Namespace, setup: DistillSetup) -> dict[str, float]:
    """Evaluate the student on the dev set: output_dir/eval_results.txt and eval_predictions.tsv (MNLI: also -MM)."""
    student = load_task_model(args.student_model, setup.task_name, setup.label_list, "student")
    student.model.to(setup.runtime.device).eval()
    tasks = [(setup.task_name, args.output_dir)]
    if setup.task_name == "mnli":
        tasks.append(("mnli-mm", args.output_dir + "-MM"))
    results = {}
    for task, directory in tasks:
        examples, loader = setup.eval_set(task)
        output = evaluate(student, task, loader, setup.processor.output_mode, setup.runtime.device, setup.precision)
        logger.info("***** Eval results (%s) ***** %s", task,
                    ", ".join(f"{k} = {v}" for k, v in sorted(output.result.items())))
        write_key_values(os.path.join(directory, RESULTS_NAME), output.result)
        write_predictions(os.path.join(directory, PREDICTIONS_NAME), examples, output, setup.label_list,
                          setup.processor.output_mode)
        results.update({(k if task == setup.task_name else f"{task}_{k}"): v for k, v in output.result.items()})
    return results


def check_flags(args: argparse.Namespace) -> None:
    check_batch_flags(args.train_batch_size, args.gradient_accumulation_steps, args.eval_step)
    if args.temperature <= 0:
        raise InputError(f"--temperature should be > 0, got {args.temperature}")
    if not args.do_eval:
        if not args.teacher_model:
            raise InputError("--teacher_model is required for distillation (only --do_eval runs without it)")
        check_output_dir(args.output_dir)


def setup_logging(output_dir: str, main_process: bool) -> None:
    """The original's console format, and (rank 0) its debug_layer_loss.log kept in output_dir instead of the CWD."""
    fmt = logging.Formatter("%(asctime)s %(message)s", datefmt="%m/%d %I:%M:%S %p")
    root = logging.getLogger()
    root.setLevel(logging.INFO if main_process else logging.WARNING)
    while _HANDLERS:  # a second run in the same process logs to its own directory only
        handler = _HANDLERS.pop()
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if main_process:
        os.makedirs(output_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(output_dir, LOG_FILE_NAME), encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
        _HANDLERS.append(handler)


def run(args: argparse.Namespace) -> Outcome:
    """task_distill.py: one distillation stage, or with --do_eval the evaluation of --student_model."""
    check_flags(args)  # every rank, before rank 0 writes anything into output_dir
    runtime = setup_runtime(args.local_rank, args.no_cuda)
    if args.do_eval and runtime.distributed:
        raise InputError("--do_eval runs in one process (start it without torchrun)")
    runtime.barrier()
    setup_logging(args.output_dir, runtime.is_main)
    logger.info("device: %s, rank %d of %d", runtime.device, runtime.rank, runtime.world_size)
    seed_everything(args.seed)

    task_name = args.task_name.lower()
    processor = get_processor(task_name)
    label_list = processor.get_labels(args.data_dir)
    tokenizer = FullTokenizer.from_pretrained(args.student_model, do_lower_case=args.do_lower_case)
    dev_sets: dict[str, tuple[list[InputExample], DataLoader]] = {}

    def eval_set(name: str) -> tuple[list[InputExample], DataLoader]:
        if name not in dev_sets:
            examples = get_processor(name).get_dev_examples(args.data_dir)
            data = tensor_data(examples, processor, label_list, tokenizer, args.max_seq_length)
            dev_sets[name] = (examples, eval_loader(data, args.eval_batch_size))
        return dev_sets[name]

    setup = DistillSetup(processor, task_name, label_list, tokenizer, runtime,
                         MixedPrecision(runtime.device, args.fp16), eval_set)
    if args.do_eval:
        return Outcome(run_eval(args, setup))
    if args.aug_train:
        train_examples = processor.get_aug_examples(args.data_dir)
    else:
        train_examples = processor.get_train_examples(args.data_dir)
    return distill(args, setup, train_examples)
