"""Where and how a TinyBERT stage runs, for general distillation, task distillation and data augmentation alike.

One process, or one of torchrun's (LOCAL_RANK in the environment, or the original's --local_rank): NCCL on
GPUs, gloo on CPU, only rank 0 writing. Also the pieces every training loop shares: seeding, mixed
precision with its optimizer step (GradScaler on CUDA float16, gradient accumulation with DDP's all-reduce
only on the micro-batch that ends a step), the original's weight-decay groups, output-directory checks.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, RandomSampler, Sampler

from utils.errors import InputError

NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")


@dataclass
class Runtime:
    """This process's device and its place among the data-parallel processes."""

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

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, values: Sequence[float]) -> list[float]:
        """The mean of each value over the processes (the values themselves in one process)."""
        if self.world_size == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return (tensor / self.world_size).tolist()

    def gather(self, value: Any) -> Optional[list]:
        """Every process's value in rank order on rank 0 (None elsewhere); [value] in one process."""
        if self.world_size == 1:
            return [value]
        values = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, values, dst=0)
        return values

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value, on every process."""
        if self.world_size == 1:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    @contextlib.contextmanager
    def own_dropout(self, seed: int, step: int) -> Iterator[None]:
        """With several processes, dropout masks from a generator of this rank and step, the global one left
        as it was (every rank draws the shared data order from it); nothing in one process."""
        if self.world_size == 1:
            yield
            return
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(dropout_seed(seed, self.rank, step))
            yield

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model in DDP when there are several processes (its buffers are constants: not broadcast)."""
        if not self.distributed:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def log_to_console(main_process: bool = True) -> None:
    """The original's console log (INFO); under torchrun only rank 0 logs below WARNING."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
                        level=logging.INFO if main_process else logging.WARNING)


def setup_runtime(local_rank: int = -1, no_cuda: bool = False) -> Runtime:
    """One process, or one of torchrun's: the process group is joined once, on the rank's own GPU."""
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


def dropout_seed(seed: int, rank: int, step: int) -> int:
    """A torch seed of its own for each rank and step (general distillation: the step a checkpoint was saved
    at, so a resumed run draws the masks the uninterrupted one draws, with no RNG state to carry)."""
    return (seed * 1_000_003 + step * 7919 + rank) % 2**63


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's generators (every device's), as the original seeded them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's part of every full batch of `batch_size` examples in RandomSampler's order, so that W
    processes train on the very batches one process would (the last, incomplete batch dropped).

    The order is drawn from torch's global generator, where the original DataLoader drew it, so one process
    shuffles exactly as before; with several, every rank first takes rank 0's generator state, so all draw
    the same order (Runtime.own_dropout keeps their dropout masks out of that generator).
    """

    def __init__(self, size: int, batch_size: int, runtime: Runtime):
        self.size = size
        self.batch_size = batch_size
        self.runtime = runtime

    def __len__(self) -> int:
        return self.size // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        runtime = self.runtime
        if runtime.world_size > 1:
            torch.set_rng_state(runtime.broadcast(torch.get_rng_state()))
        share = self.batch_size // runtime.world_size
        for batch in BatchSampler(RandomSampler(range(self.size)), self.batch_size, drop_last=True):
            yield batch[runtime.rank * share:(runtime.rank + 1) * share]


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def freeze(modules: Sequence[nn.Module], keep: Sequence[nn.Parameter] = ()) -> None:
    """Mark the parameters a stage's loss never reaches as frozen (the original's optimizer skipped their
    missing gradients all the same), so that DDP leaves them out; those in `keep` (a tied matrix) stay."""
    for module in modules:
        for parameter in module.parameters():
            if not any(parameter is kept for kept in keep):
                parameter.requires_grad_(False)


def weight_decay_groups(model: nn.Module) -> list[dict]:
    """The original's optimizer groups: weight decay 0.01, none for biases and LayerNorm."""
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if not any(nd in n for nd in NO_DECAY)], "weight_decay": 0.01},
        {"params": [p for n, p in named if any(nd in n for nd in NO_DECAY)], "weight_decay": 0.0},
    ]


class MixedPrecision:
    """--fp16: float16 autocast with loss scaling (GradScaler) on CUDA, bfloat16 autocast on CPU (CPUs have
    no fast float16; bfloat16 needs no scaling); float32 when off."""

    def __init__(self, device: torch.device, enabled: bool):
        self.device = device
        self.enabled = enabled
        self.scaler = torch.amp.GradScaler("cuda") if enabled and device.type == "cuda" else None

    def autocast(self) -> ContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def state_dict(self) -> Optional[dict]:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: Optional[dict]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


class OptimizerStep:
    """Gradient accumulation over micro-batches: each micro-batch's loss / accumulation_steps goes backward
    (scaled under float16), DDP all-reduces only on the micro-batch that ends a step, which then takes the
    optimizer (or GradScaler) step and clears the gradients."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, precision: MixedPrecision,
                 accumulation_steps: int):
        self.model = model
        self.optimizer = optimizer
        self.precision = precision
        self.accumulation_steps = accumulation_steps

    def ends_step(self, micro_step: int) -> bool:
        return (micro_step + 1) % self.accumulation_steps == 0

    def sync(self, micro_step: int) -> ContextManager:
        """Around the forward and backward of a micro-batch: DDP's no_sync unless it ends a step."""
        if self.ends_step(micro_step) or not isinstance(self.model, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.model.no_sync()

    def backward(self, loss: torch.Tensor) -> None:
        loss = loss / self.accumulation_steps
        scaler = self.precision.scaler
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step(self) -> None:
        scaler = self.precision.scaler
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad()


def check_batch_flags(train_batch_size: int, gradient_accumulation_steps: int, eval_step: int) -> None:
    if gradient_accumulation_steps < 1:
        raise InputError(f"--gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}")
    if train_batch_size < gradient_accumulation_steps:
        raise InputError(f"--train_batch_size {train_batch_size} is smaller than --gradient_accumulation_steps "
                         f"{gradient_accumulation_steps}")
    if eval_step < 1:
        raise InputError(f"--eval_step must be >= 1, got {eval_step}")


def check_output_dir(output_dir: os.PathLike | str, resume: bool = False, how_to_resume: str = "") -> None:
    """A new or empty directory, as the original required; one being resumed into loses only the half-written
    temporaries a kill during a save left (atomic_open's .*.tmp, the datasets' .memmap_* directories)."""
    output_dir = Path(output_dir)
    if not output_dir.exists() or not any(output_dir.iterdir()):
        return
    if not resume:
        raise InputError(f"output directory already exists and is not empty{how_to_resume}", output_dir)
    for stale in output_dir.glob(".*.tmp"):
        if stale.is_file():
            stale.unlink()
    for stale in output_dir.glob(".memmap_*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
