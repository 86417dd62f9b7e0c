"""Task-specific distillation and evaluation, the loop of TinyBERT's task_distill.py with its bugs fixed.

Stage 1 (intermediate layers): loss = att_loss + rep_loss against a fine-tuned teacher, constant learning
rate, the student saved at every evaluation step and once more at the end. Stage 2 (--pred_distill): soft
cross-entropy to the teacher's logits at temperature T (MSE to the gold scores for regression), warmup-linear
schedule, the dev set evaluated every eval_step optimizer steps and at the end, the best student by the
task's metric kept. Results are appended to output_dir/eval_results.txt as `key = value` blocks.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from tqdm import tqdm, trange

from distillation import att_loss, rep_loss, soft_cross_entropy
from task_data import (
    config_label_names,
    config_num_labels,
    convert_examples_to_features,
    get_tensor_data,
    label_permutation,
)
from transformer.checkpoints import find_config_file
from transformer.modeling import BertConfig, ClassifierOutput, TinyBertForSequenceClassification
from transformer.optimization import BertAdam
from utils.errors import InputError
from utils.fileio import atomic_open, write_key_values
from utils.metrics import compute_metrics, primary_metric
from utils.tasks import DataProcessor, InputExample

logger = logging.getLogger(__name__)

RESULTS_NAME = "eval_results.txt"
PREDICTIONS_NAME = "eval_predictions.tsv"


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


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA, bfloat16 on CPU (CPUs have no fast float16); a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


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


def make_loader(examples: Sequence[InputExample], processor: DataProcessor, label_list, tokenizer,
                max_seq_length: int, batch_size: int, train: bool) -> DataLoader:
    features = convert_examples_to_features(examples, label_list, max_seq_length, tokenizer, processor.output_mode)
    data = get_tensor_data(processor.output_mode, features)
    sampler = RandomSampler(data) if train else SequentialSampler(data)
    # The original skipped every batch smaller than train_batch_size: drop_last does the same.
    return DataLoader(data, sampler=sampler, batch_size=batch_size, drop_last=train)


@dataclass
class EvalOutput:
    result: dict[str, float]
    logits: np.ndarray
    labels: np.ndarray


@torch.no_grad()
def evaluate(task_model: TaskModel, task_name: str, loader: DataLoader, output_mode: str,
             device: torch.device, mixed_precision: bool = False) -> EvalOutput:
    """The task's metrics and the mean per-batch eval_loss (cross-entropy, or MSE for regression)."""
    was_training = task_model.model.training
    task_model.model.eval()
    losses, all_logits, all_labels = [], [], []
    for batch in tqdm(loader, desc="Evaluating", leave=False):
        input_ids, input_mask, segment_ids, label_ids, _ = (t.to(device) for t in batch)
        with autocast(device, mixed_precision):
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


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.DataParallel) else model


def _param_groups(model: nn.Module) -> list[dict[str, Any]]:
    no_decay = ["bias", "LayerNorm.bias", "LayerNorm.weight"]
    params = list(model.named_parameters())
    return [
        {"params": [p for n, p in params if not any(nd in n for nd in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in params if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]


@dataclass
class DistillSetup:
    """What one distillation run needs beyond its flags."""

    processor: DataProcessor
    task_name: str
    label_list: list[Optional[str]]
    tokenizer: Any
    device: torch.device
    n_gpu: int = 1
    eval_sets: dict[str, tuple[list[InputExample], DataLoader]] = field(default_factory=dict)


@dataclass
class RunningLosses:
    """Per-epoch sums of the (unscaled) losses of every micro-batch, and their means."""

    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("loss", "cls_loss", "att_loss", "rep_loss"), 0.0))
    batches: int = 0

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] += value
        self.batches += 1

    def means(self) -> dict[str, float]:
        return {key: value / max(self.batches, 1) for key, value in self.sums.items()}


def distillation_loss(student: TaskModel, teacher: TaskModel, batch: Sequence[torch.Tensor], device: torch.device,
                      pred_distill: bool, output_mode: str, temperature: float,
                      mixed_precision: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch's loss and its parts: att_loss + rep_loss (stage 1), or the prediction loss (--pred_distill).

    Stage 2: soft cross-entropy of student / T against teacher / T (the original's, no T^2), or for
    regression the MSE to the gold scores, as the original.
    """
    input_ids, input_mask, segment_ids, label_ids = (t.to(device) for t in batch[:4])
    with autocast(device, mixed_precision):
        student_out = student.logits(input_ids, segment_ids, input_mask, is_student=True)
        with torch.no_grad():
            teacher_out = teacher.logits(input_ids, segment_ids, input_mask)
    values = {"att_loss": 0.0, "rep_loss": 0.0, "cls_loss": 0.0}
    if not pred_distill:
        att = att_loss(student_out.attentions, teacher_out.attentions)
        rep = rep_loss(student_out.hidden_states, teacher_out.hidden_states)
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


def distill(args: Any, setup: DistillSetup, train_examples: Sequence[InputExample],
            eval_loader_for: Any) -> dict[str, Any]:
    """Run one distillation stage; return a summary (global_step, best metric, examples/s of the training
    steps, evaluation and saving excluded).

    eval_loader_for(task_name) -> (examples, DataLoader) of that task's dev set (called lazily: stage 1
    needs none; MNLI's mismatched set gets its own loader, the original overwrote the matched one).
    """
    output_mode = setup.processor.output_mode
    device = setup.device
    teacher = load_task_model(args.teacher_model, setup.task_name, setup.label_list, "teacher",
                              require_classifier=True)
    student = load_task_model(args.student_model, setup.task_name, setup.label_list, "student",
                              fit_size=teacher.model.config.hidden_size)
    teacher.model.to(device).eval()  # the original left the teacher's dropout on
    student.model.to(device).train()
    if setup.n_gpu > 1:
        teacher.model = nn.DataParallel(teacher.model)
        student.model = nn.DataParallel(student.model)
    label_config(_unwrap(student.model).config, setup.label_list)

    per_step_batch = args.train_batch_size // args.gradient_accumulation_steps
    train_loader = make_loader(train_examples, setup.processor, setup.label_list, setup.tokenizer,
                               args.max_seq_length, per_step_batch, train=True)
    if len(train_loader) == 0:
        raise InputError(f"the training set has {len(train_examples)} examples, fewer than one batch of "
                         f"{per_step_batch} (--train_batch_size / --gradient_accumulation_steps)")
    num_train_optimization_steps = (
        int(len(train_examples) / per_step_batch / args.gradient_accumulation_steps) * args.num_train_epochs)

    schedule = "warmup_linear" if args.pred_distill else "none"
    optimizer = BertAdam(_param_groups(student.model), schedule=schedule, lr=args.learning_rate,
                         warmup=args.warmup_proportion, t_total=num_train_optimization_steps)
    scaler = torch.amp.GradScaler("cuda") if args.fp16 and device.type == "cuda" else None

    logger.info("***** Running training *****  examples = %d, batch size = %d, optimization steps = %s",
                len(train_examples), per_step_batch, num_train_optimization_steps)
    state = {"global_step": 0, "best": -math.inf, "evaluated_at": -1, "checkpoint_s": 0.0, "saved": False}
    output_dir = args.output_dir
    primary = primary_metric(setup.task_name)
    examples_seen = 0
    start = time.perf_counter()

    def checkpoint(losses: RunningLosses) -> None:
        begin = time.perf_counter()
        try:
            evaluate_and_save(losses)
        finally:
            state["checkpoint_s"] += time.perf_counter() - begin

    def evaluate_and_save(losses: RunningLosses) -> None:
        result: dict[str, Any] = {}
        if args.pred_distill:
            _, loader = eval_loader_for(setup.task_name)
            result = evaluate(student, setup.task_name, loader, output_mode, device, args.fp16).result
        result.update(losses.means())
        result["global_step"] = state["global_step"]
        logger.info("***** Eval results ***** %s", ", ".join(f"{k} = {v}" for k, v in sorted(result.items())))
        write_key_values(os.path.join(output_dir, RESULTS_NAME), result, append=True)
        state["evaluated_at"] = state["global_step"]
        if args.pred_distill:
            # The first evaluation is always kept (the original started from 0.0, so a CoLA student with a
            # negative MCC, or any WNLI student, was never saved); a NaN score never beats a number.
            score = -math.inf if math.isnan(result[primary]) else result[primary]
            if state["saved"] and score <= state["best"]:
                return
            state["best"] = score
        state["saved"] = True
        logger.info("***** Save model *****")
        _unwrap(student.model).save_pretrained(output_dir, setup.tokenizer)
        if args.pred_distill and setup.task_name == "mnli":
            _, loader = eval_loader_for("mnli-mm")
            mm = evaluate(student, "mnli-mm", loader, output_mode, device, args.fp16).result
            mm["global_step"] = state["global_step"]
            write_key_values(os.path.join(output_dir + "-MM", RESULTS_NAME), mm, append=True)

    losses = RunningLosses()
    for _ in trange(int(args.num_train_epochs), desc="Epoch"):
        losses = RunningLosses()
        for step, batch in enumerate(tqdm(train_loader, desc="Iteration", ascii=True)):
            loss, values = distillation_loss(student, teacher, batch, device, args.pred_distill, output_mode,
                                             args.temperature, args.fp16)
            losses.add(**values)
            if args.gradient_accumulation_steps > 1:
                loss = loss / args.gradient_accumulation_steps
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
            examples_seen += batch[0].size(0)
            if (step + 1) % args.gradient_accumulation_steps == 0:
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad()
                state["global_step"] += 1
                if state["global_step"] % args.eval_step == 0:
                    checkpoint(losses)
    if state["evaluated_at"] != state["global_step"]:
        checkpoint(losses)
    training_s = time.perf_counter() - start - state["checkpoint_s"]
    return {"global_step": state["global_step"], "best": state["best"], "examples": examples_seen,
            "training_s": training_s, "examples_per_s": examples_seen / training_s if training_s > 0 else 0.0}


def iterate_eval_results(path: str) -> Iterator[dict[str, str]]:
    """Each `key = value` block of an eval_results.txt (a block ends with its global_step line)."""
    block: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if " = " not in line:
                continue
            key, value = line.rstrip("\n").split(" = ", 1)
            if key in block:
                yield block
                block = {}
            block[key] = value
    if block:
        yield block
