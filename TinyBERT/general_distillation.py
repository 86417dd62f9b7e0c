"""TinyBERT's general distillation loop: a student learns a pre-trained teacher's attention scores and hidden states.

The original's arithmetic (layer mapping, losses, BertAdam with warmup_linear, weight decay 0.01 except
bias and LayerNorm, gradient accumulation, log.txt, step_{N}_pytorch_model.bin) with its known bugs fixed:
the teacher runs in eval mode under no_grad (the original left its dropout on); --fp16 works (autocast with
GradScaler on CUDA, bfloat16 autocast on CPU); multi-process training wraps the student in torch DDP (the
original wrapped only the teacher, so replicas drifted apart); every checkpoint also writes a plain
pytorch_model.bin + config.json + vocab.txt (what task_distill.py and --continue_train load) and, last,
training_state.pt, from which --continue_train resumes model, optimizer, schedule and data position.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from distillation import att_loss as attention_loss
from distillation import layer_mapping
from distillation import rep_loss as hidden_loss
from pregenerated_data import PregeneratedDataset, discover_epochs, epoch_paths, read_metrics
from transformer.file_utils import WEIGHTS_NAME
from transformer.modeling import BertConfig, BertModel, TinyBertForPreTraining
from transformer.optimization import BertAdam
from utils.errors import InputError
from utils.fileio import atomic_open, write_key_values
from utils.tokenization import BertTokenizer

logger = logging.getLogger(__name__)

TRAINING_STATE_NAME = "training_state.pt"
LOG_NAME = "log.txt"
NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")


@dataclass
class Runtime:
    """Where this process trains: its device and its place among the data-parallel processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = -1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.local_rank != -1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(local_rank: int, no_cuda: bool) -> Runtime:
    """One process, or one of torchrun's (LOCAL_RANK in the environment, or the original's --local_rank):
    NCCL on GPUs, gloo on CPU."""
    if local_rank == -1 and "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ:
        local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = torch.cuda.is_available() and not no_cuda
    if local_rank == -1:
        return Runtime(torch.device("cuda" if use_cuda else "cpu"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Runtime(device, dist.get_rank(), dist.get_world_size(), local_rank)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def dropout_seed(seed: int, rank: int, global_step: int) -> int:
    """The torch seed set after every checkpoint, so that a resumed run draws the dropout masks the
    uninterrupted one draws, with no RNG state to carry between processes."""
    return (seed * 1_000_003 + global_step * 7919 + rank) % 2**63


def check_pair(teacher_config: BertConfig, student_config: BertConfig, tokenizer, student_model: str,
               teacher_model: str, seq_len: int) -> None:
    """Stop with a clear message when the student cannot learn from this teacher on this data."""
    layer_mapping(teacher_config.num_hidden_layers, student_config.num_hidden_layers)
    if teacher_config.num_attention_heads != student_config.num_attention_heads:
        raise InputError(
            f"the student has {student_config.num_attention_heads} attention heads and the teacher "
            f"{teacher_config.num_attention_heads}: the attention loss compares them head by head", student_model)
    if student_config.vocab_size != teacher_config.vocab_size:
        raise InputError(
            f"the student's vocab_size {student_config.vocab_size} differs from the teacher's "
            f"{teacher_config.vocab_size}: both read the same token ids", student_model)
    if len(tokenizer.vocab) > teacher_config.vocab_size:
        raise InputError(
            f"vocab.txt has {len(tokenizer.vocab)} tokens but the teacher's config has vocab_size "
            f"{teacher_config.vocab_size}", teacher_model)
    for name, config, where in (("student", student_config, student_model), ("teacher", teacher_config, teacher_model)):
        if not config.use_relative_position and seq_len > config.max_position_embeddings:
            raise InputError(
                f"the pregenerated data has max_seq_len {seq_len}, more than the {name}'s "
                f"max_position_embeddings {config.max_position_embeddings}", where)


def build_student(args: argparse.Namespace, fit_size: int) -> TinyBertForPreTraining:
    """Random init from student_model's config (the original's from_scratch), or its weights with --continue_train."""
    if args.continue_train:
        return TinyBertForPreTraining.from_pretrained(args.student_model, fit_size=fit_size)
    return TinyBertForPreTraining.from_scratch(args.student_model, fit_size=fit_size)


def freeze_unused(student: TinyBertForPreTraining) -> None:
    """The pooler and the MLM/NSP heads never receive gradients in distillation (the original left them
    untouched at random init too); marking them frozen lets DDP skip them. The MLM decoder is the word
    embedding matrix itself and stays trainable."""
    embedding = student.bert.embeddings.word_embeddings.weight
    for module in (student.bert.pooler, student.cls):
        for parameter in module.parameters():
            if parameter is not embedding:
                parameter.requires_grad_(False)


def optimizer_groups(model: torch.nn.Module) -> list[dict]:
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if not any(nd in n for nd in NO_DECAY)], "weight_decay": 0.01},
        {"params": [p for n, p in named if any(nd in n for nd in NO_DECAY)], "weight_decay": 0.0},
    ]


def distillation_losses(student, teacher, input_ids, segment_ids, input_mask, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """(att_loss, rep_loss) of one batch; the teacher in eval mode under no_grad."""
    with autocast():
        student_out = student(input_ids, segment_ids, input_mask)
        with torch.no_grad():
            teacher_out = teacher(input_ids, segment_ids, input_mask)
        return (attention_loss(student_out.attentions, teacher_out.attentions),
                hidden_loss(student_out.hidden_states, teacher_out.hidden_states))


def _autocast_factory(fp16: bool, device: torch.device):
    if not fp16:
        return nullcontext
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.float16)
    return lambda: torch.autocast("cpu", dtype=torch.bfloat16)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


@dataclass
class Progress:
    """Where training stands; saved in training_state.pt so that --continue_train picks up from it."""

    global_step: int = 0
    epoch: int = 0
    batches_done: int = 0  # micro-batches of `epoch` already trained on
    tr_loss: float = 0.0
    tr_att_loss: float = 0.0
    tr_rep_loss: float = 0.0
    nb_tr_steps: int = 0

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.batches_done = epoch, 0
        self.tr_loss = self.tr_att_loss = self.tr_rep_loss = 0.0
        self.nb_tr_steps = 0


def save_checkpoint(output_dir: Path, student, optimizer, scaler, progress: Progress, tokenizer,
                    args: argparse.Namespace, world_size: int) -> None:
    """step_{N}_pytorch_model.bin (the original's), pytorch_model.bin + config.json + vocab.txt, then
    training_state.pt, each atomically; training_state.pt, written last, holds the weights it resumes with."""
    model = _unwrap(student)
    state_dict = model.state_dict()
    with atomic_open(output_dir / f"step_{progress.global_step}_{WEIGHTS_NAME}", "wb") as handle:
        torch.save(state_dict, handle)
    model.save_pretrained(output_dir, tokenizer)
    state = {
        "model": state_dict,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "progress": vars(progress).copy(),
        "seed": args.seed,
        "train_batch_size": args.train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": world_size,
    }
    with atomic_open(output_dir / TRAINING_STATE_NAME, "wb") as handle:
        torch.save(state, handle)


def load_training_state(student_model: str, args: argparse.Namespace, world_size: int) -> Optional[dict]:
    """The state saved beside --student_model's weights, checked against this run's data settings."""
    path = Path(student_model) / TRAINING_STATE_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which
        raise InputError(f"cannot read the training state ({type(err).__name__}: {err})", path) from None
    for key, current in (("seed", args.seed), ("train_batch_size", args.train_batch_size),
                         ("gradient_accumulation_steps", args.gradient_accumulation_steps), ("world_size", world_size)):
        if state.get(key) != current:
            raise InputError(
                f"saved with {key} = {state.get(key)}, this run has {current}: resuming the data position "
                f"needs the same {key}", path)
    return state


def check_output_dir(output_dir: Path, continue_train: bool) -> None:
    """A new or empty directory, as the original required; --continue_train may resume into a used one, whose
    half-written temporaries (left by a kill during a save) are removed."""
    if not output_dir.exists() or not any(output_dir.iterdir()):
        return
    if not continue_train:
        raise InputError("output directory already exists and is not empty (use a new one, or --continue_train "
                         "to resume into it)", output_dir)
    for stale in output_dir.glob(".*.tmp"):
        if stale.is_file():
            stale.unlink()
    for stale in output_dir.glob(".memmap_*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _mean_across(values: list[float], runtime: Runtime) -> list[float]:
    if runtime.world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=runtime.device if runtime.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    return (tensor / runtime.world_size).tolist()


@dataclass
class TrainingResult:
    means: dict  # the last running means (global_step, loss, att_loss, rep_loss)
    student: TinyBertForPreTraining  # this process's trained replica


def load_models(args: argparse.Namespace, runtime: Runtime, seq_len: int):
    """(tokenizer, teacher in eval mode, student, training state or None), checked against each other, on the device.

    The tokenizer is the teacher's vocab.txt, as the original; the student's fit_dense maps to the teacher's width.
    """
    tokenizer = BertTokenizer.from_pretrained(args.teacher_model, do_lower_case=args.do_lower_case)
    teacher = BertModel.from_pretrained(args.teacher_model)
    student = build_student(args, fit_size=teacher.config.hidden_size)
    check_pair(teacher.config, student.config, tokenizer, args.student_model, args.teacher_model, seq_len)
    state = load_training_state(args.student_model, args, runtime.world_size) if args.continue_train else None
    if state is not None:
        student.load_state_dict(state["model"])
    freeze_unused(student)
    teacher.to(runtime.device).eval()
    student.to(runtime.device)
    total = 0
    for name, parameter in student.named_parameters():
        logger.info("%s %d", name, parameter.nelement())
        total += parameter.nelement()
    logger.info("Total parameters: %d", total)
    return tokenizer, teacher, student, state


def train(args: argparse.Namespace) -> TrainingResult:
    """Run general distillation as general_distill.py's flags say."""
    runtime = setup_runtime(args.local_rank, args.no_cuda)
    logger.info("device: %s rank %d of %d, fp16: %s", runtime.device, runtime.rank, runtime.world_size, args.fp16)
    if args.gradient_accumulation_steps < 1:
        raise InputError(f"--gradient_accumulation_steps must be >= 1, got {args.gradient_accumulation_steps}")
    if args.train_batch_size < args.gradient_accumulation_steps:
        raise InputError("--train_batch_size must be at least --gradient_accumulation_steps")
    if args.eval_step < 1:
        raise InputError(f"--eval_step must be >= 1, got {args.eval_step}")
    micro_batch = args.train_batch_size // args.gradient_accumulation_steps
    seed_everything(args.seed)

    output_dir = Path(args.output_dir)
    if runtime.is_main:
        check_output_dir(output_dir, args.continue_train)
        output_dir.mkdir(parents=True, exist_ok=True)
    if runtime.distributed:
        dist.barrier()  # other ranks put their memmaps under output_dir only once it is checked

    samples_per_epoch, num_data_epochs = discover_epochs(args.pregenerated_data, args.num_train_epochs)
    seq_len = read_metrics(epoch_paths(args.pregenerated_data, 0)[1])["max_seq_len"]
    total_train_examples = sum(samples_per_epoch[i % len(samples_per_epoch)] for i in range(int(args.num_train_epochs)))
    num_train_optimization_steps = int(total_train_examples / micro_batch / args.gradient_accumulation_steps)
    num_train_optimization_steps = max(1, num_train_optimization_steps // runtime.world_size)

    tokenizer, teacher, student, state = load_models(args, runtime, seq_len)

    optimizer = BertAdam(optimizer_groups(student), lr=args.learning_rate, warmup=args.warmup_proportion,
                         t_total=num_train_optimization_steps)
    scaler = torch.amp.GradScaler("cuda") if args.fp16 and runtime.device.type == "cuda" else None
    progress = Progress()
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        logger.info("Resuming at global step %d, epoch %d, after %d batches of it",
                    progress.global_step, progress.epoch, progress.batches_done)
    if runtime.distributed:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        student = DistributedDataParallel(student, device_ids=device_ids)
    torch.manual_seed(dropout_seed(args.seed, runtime.rank, progress.global_step))
    autocast = _autocast_factory(args.fp16, runtime.device)

    def checkpoint() -> None:
        """Rank 0 saves; every rank then reseeds its dropout, as a run resumed from here will."""
        if runtime.is_main:
            save_checkpoint(output_dir, student, optimizer, scaler, progress, tokenizer, args, runtime.world_size)
        torch.manual_seed(dropout_seed(args.seed, runtime.rank, progress.global_step))

    logger.info("***** Running training *****")
    logger.info("  Num examples = %d", total_train_examples)
    logger.info("  Batch size = %d", micro_batch)
    logger.info("  Num steps = %d", num_train_optimization_steps)
    means = {}
    student.train()
    for epoch in tqdm(range(progress.epoch, int(args.num_train_epochs)), desc="Epoch", disable=not runtime.is_main):
        if epoch != progress.epoch or progress.batches_done == 0:
            progress.start_epoch(epoch)
        dataset = PregeneratedDataset(args.pregenerated_data, epoch, tokenizer, num_data_epochs,
                                      reduce_memory=args.reduce_memory, working_dir=output_dir if args.reduce_memory else None,
                                      show_progress=runtime.is_main)
        sampler = DistributedSampler(dataset, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True, seed=args.seed)
        sampler.set_epoch(epoch)
        indices = list(sampler)[progress.batches_done * micro_batch:]
        loader = DataLoader(dataset, sampler=indices, batch_size=micro_batch, generator=torch.Generator())
        optimizer.zero_grad()
        first = progress.batches_done
        for step, batch in enumerate(tqdm(loader, desc="Iteration", ascii=True, disable=not runtime.is_main), start=first):
            input_ids, input_mask, segment_ids, _, _ = (t.to(runtime.device) for t in batch)
            boundary = (step + 1) % args.gradient_accumulation_steps == 0
            sync = nullcontext() if boundary or not runtime.distributed else student.no_sync()
            with sync:
                att, rep = distillation_losses(student, teacher, input_ids, segment_ids, input_mask, autocast)
                loss = (att + rep) / args.gradient_accumulation_steps
                (scaler.scale(loss) if scaler is not None else loss).backward()
            progress.tr_att_loss += att.item()
            progress.tr_rep_loss += rep.item()
            progress.tr_loss += loss.item()
            progress.nb_tr_steps += 1
            progress.batches_done = step + 1
            if not boundary:
                continue
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad()
            progress.global_step += 1
            if (progress.global_step + 1) % args.eval_step == 0:
                means = _running_means(progress, args, runtime)
                if runtime.is_main:
                    logger.info("***** Eval results *****")
                    for key in sorted(means):
                        logger.info("  %s = %s", key, means[key])
                    write_key_values(output_dir / LOG_NAME, means, append=True)
                checkpoint()
        dataset.close()
        means = _running_means(progress, args, runtime)
        progress.start_epoch(epoch + 1)
        checkpoint()
    if runtime.distributed:
        dist.barrier()
    return TrainingResult(means, _unwrap(student))


def _running_means(progress: Progress, args: argparse.Namespace, runtime: Runtime) -> dict:
    """The original's log.txt values: running means of the epoch so far, averaged over processes.

    The original multiplied the att and rep sums by the accumulation steps as it did the (already divided)
    total loss, which inflated them with accumulation; here each is the mean per batch.
    """
    steps = max(progress.nb_tr_steps, 1)
    loss, att, rep = _mean_across(
        [progress.tr_loss * args.gradient_accumulation_steps / steps, progress.tr_att_loss / steps,
         progress.tr_rep_loss / steps], runtime)
    return {"global_step": progress.global_step, "loss": loss, "att_loss": att, "rep_loss": rep}
