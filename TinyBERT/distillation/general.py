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
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Optional

import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from transformer.file_utils import WEIGHTS_NAME
from transformer.modeling import BertConfig, BertModel, TinyBertForPreTraining
from transformer.optimization import BertAdam
from utils.errors import InputError
from utils.fileio import atomic_open, write_key_values
from utils.tokenization import BertTokenizer

from .losses import intermediate_losses, layer_mapping
from .pregenerated import PregeneratedDataset, discover_epochs, epoch_paths, read_metrics
from .runtime import (MixedPrecision, OptimizerStep, Runtime, check_batch_flags, check_output_dir, dropout_seed,
                      freeze, log_to_console, seed_everything, setup_runtime, unwrap, weight_decay_groups)

logger = logging.getLogger(__name__)

TRAINING_STATE_NAME = "training_state.pt"
LOG_NAME = "log.txt"


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
    untouched at random init too). The MLM decoder is the word embedding matrix itself and stays trainable."""
    freeze((student.bert.pooler, student.cls), keep=(student.bert.embeddings.word_embeddings.weight,))


def distillation_losses(student, teacher, input_ids, segment_ids, input_mask,
                        autocast: Callable[[], ContextManager] = nullcontext) -> tuple[torch.Tensor, torch.Tensor]:
    """(att_loss, rep_loss) of one batch under autocast() (MixedPrecision.autocast); the teacher in eval mode
    under no_grad."""
    with autocast():
        student_out = student(input_ids, segment_ids, input_mask)
        with torch.no_grad():
            teacher_out = teacher(input_ids, segment_ids, input_mask)
        return intermediate_losses(student_out, teacher_out)


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


def save_checkpoint(output_dir: Path, student, optimizer, precision: MixedPrecision, progress: Progress, tokenizer,
                    args: argparse.Namespace, world_size: int) -> None:
    """step_{N}_pytorch_model.bin (the original's), pytorch_model.bin + config.json + vocab.txt, then
    training_state.pt, each atomically; training_state.pt, written last, holds the weights it resumes with."""
    model = unwrap(student)
    state_dict = model.state_dict()
    with atomic_open(output_dir / f"step_{progress.global_step}_{WEIGHTS_NAME}", "wb") as handle:
        torch.save(state_dict, handle)
    model.save_pretrained(output_dir, tokenizer)
    state = {
        "model": state_dict,
        "optimizer": optimizer.state_dict(),
        "scaler": precision.state_dict(),
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
    log_to_console(runtime.is_main)
    logger.info("device: %s rank %d of %d, fp16: %s", runtime.device, runtime.rank, runtime.world_size, args.fp16)
    check_batch_flags(args.train_batch_size, args.gradient_accumulation_steps, args.eval_step)
    micro_batch = args.train_batch_size // args.gradient_accumulation_steps
    seed_everything(args.seed)

    output_dir = Path(args.output_dir)
    if runtime.is_main or not args.continue_train:  # every rank may refuse; only rank 0 cleans up
        check_output_dir(output_dir, args.continue_train, " (use a new one, or --continue_train to resume into it)")
    runtime.barrier()  # rank 0 writes, and the others put their memmaps, under output_dir once it is checked
    output_dir.mkdir(parents=True, exist_ok=True)

    samples_per_epoch, num_data_epochs = discover_epochs(args.pregenerated_data, args.num_train_epochs)
    seq_len = read_metrics(epoch_paths(args.pregenerated_data, 0)[1])["max_seq_len"]
    total_train_examples = sum(samples_per_epoch[i % len(samples_per_epoch)] for i in range(int(args.num_train_epochs)))
    num_train_optimization_steps = int(total_train_examples / micro_batch / args.gradient_accumulation_steps)
    num_train_optimization_steps = max(1, num_train_optimization_steps // runtime.world_size)

    tokenizer, teacher, student, state = load_models(args, runtime, seq_len)

    optimizer = BertAdam(weight_decay_groups(student), lr=args.learning_rate, warmup=args.warmup_proportion,
                         t_total=num_train_optimization_steps)
    precision = MixedPrecision(runtime.device, args.fp16)
    progress = Progress()
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        precision.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        logger.info("Resuming at global step %d, epoch %d, after %d batches of it",
                    progress.global_step, progress.epoch, progress.batches_done)
    student = runtime.wrap(student)
    update = OptimizerStep(student, optimizer, precision, args.gradient_accumulation_steps)
    torch.manual_seed(dropout_seed(args.seed, runtime.rank, progress.global_step))

    def checkpoint() -> None:
        """Rank 0 saves; every rank then reseeds its dropout, as a run resumed from here will."""
        if runtime.is_main:
            save_checkpoint(output_dir, student, optimizer, precision, progress, tokenizer, args, runtime.world_size)
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
                                      reduce_memory=args.reduce_memory,
                                      working_dir=output_dir if args.reduce_memory else None,
                                      show_progress=runtime.is_main)
        sampler = DistributedSampler(dataset, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True,
                                     seed=args.seed)
        sampler.set_epoch(epoch)
        indices = list(sampler)[progress.batches_done * micro_batch:]
        loader = DataLoader(dataset, sampler=indices, batch_size=micro_batch, generator=torch.Generator())
        optimizer.zero_grad()
        first = progress.batches_done
        batches = tqdm(loader, desc="Iteration", ascii=True, disable=not runtime.is_main)
        for step, batch in enumerate(batches, start=first):
            input_ids, input_mask, segment_ids, _, _ = (t.to(runtime.device) for t in batch)
            with update.sync(step):
                att, rep = distillation_losses(student, teacher, input_ids, segment_ids, input_mask,
                                               precision.autocast)
                update.backward(att + rep)
            progress.tr_att_loss += att.item()
            progress.tr_rep_loss += rep.item()
            progress.tr_loss += ((att + rep) / args.gradient_accumulation_steps).item()
            progress.nb_tr_steps += 1
            progress.batches_done = step + 1
            if not update.ends_step(step):
                continue
            update.step()
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
    runtime.barrier()
    return TrainingResult(means, unwrap(student))


def _running_means(progress: Progress, args: argparse.Namespace, runtime: Runtime) -> dict:
    """The original's log.txt values: running means of the epoch so far, averaged over processes.

    The original multiplied the att and rep sums by the accumulation steps as it did the (already divided)
    total loss, which inflated them with accumulation; here each is the mean per batch.
    """
    steps = max(progress.nb_tr_steps, 1)
    loss, att, rep = runtime.mean([progress.tr_loss * args.gradient_accumulation_steps / steps,
                                   progress.tr_att_loss / steps, progress.tr_rep_loss / steps])
    return {"global_step": progress.global_step, "loss": loss, "att_loss": att, "rep_loss": rep}
