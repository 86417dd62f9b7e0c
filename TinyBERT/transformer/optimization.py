"""BertAdam and its learning-rate schedules, exactly as TinyBERT trained with them.

BertAdam differs from Adam/AdamW in ways the published results depend on: gradients are clipped per
tensor (not globally), there is no bias correction, weight decay is decoupled (added to the update), and
the schedule is read at the step count before the increment (so the first step has lr 0 under warmup).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Optional, Union

import torch
from torch.nn.utils import clip_grad_norm_
from torch.optim import Optimizer
from torch.optim.optimizer import required

from utils.errors import InputError

logger = logging.getLogger(__name__)

class _LRSchedule:
    """A multiplier of the base learning rate as a function of training progress = step / t_total.

    warmup is a fraction of t_total in [0, 1), or -1 for none; t_total < 0 turns the schedule off (1.0).
    """

    name = ""
    warn_t_total = False

    def __init__(self, warmup: float = 0.002, t_total: float = -1, **kwargs: Any):
        if t_total < 0:
            logger.warning("t_total value of %s results in schedule not being applied", t_total)
        if not 0.0 <= warmup < 1.0 and not warmup == -1:
            raise InputError(f"invalid warmup {warmup}: should be in [0.0, 1.0) or -1")
        self.warmup = float(max(warmup, 0.0))
        self.t_total = float(t_total)
        self.warned_for_t_total_at_progress = -1.0

    def get_lr(self, step: int, nowarn: bool = False) -> float:
        if self.t_total < 0:
            return 1.0
        progress = float(step) / self.t_total
        multiplier = self.get_lr_(progress)
        if not nowarn and self.warn_t_total and progress > 1.0 and progress > self.warned_for_t_total_at_progress:
            logger.warning(
                "Training beyond specified 't_total'. Learning rate multiplier set to %s. "
                "Please set 't_total' of %s correctly.",
                multiplier,
                type(self).__name__,
            )
            self.warned_for_t_total_at_progress = progress
        return multiplier

    def get_lr_(self, progress: float) -> float:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Plain values that rebuild this schedule (optimizer state dicts stay loadable with weights_only)."""
        return {"name": self.name, "warmup": self.warmup, "t_total": self.t_total}


class ConstantLR(_LRSchedule):
    name = "none"

    def get_lr_(self, progress: float) -> float:
        return 1.0


class WarmupConstantSchedule(_LRSchedule):
    """Linear warmup from 0 to 1 over `warmup`, then 1."""

    name = "warmup_constant"

    def get_lr_(self, progress: float) -> float:
        if progress < self.warmup:
            return progress / self.warmup
        return 1.0


class WarmupLinearSchedule(_LRSchedule):
    """Linear warmup, then linear decay to 0 at t_total."""

    name = "warmup_linear"
    warn_t_total = True

    def get_lr_(self, progress: float) -> float:
        if progress < self.warmup:
            return progress / self.warmup
        return max((progress - 1.0) / (self.warmup - 1.0), 0.0)


class WarmupCosineSchedule(_LRSchedule):
    """Linear warmup, then a cosine over `cycles` periods of the rest (0.5: from 1 down to 0)."""

    name = "warmup_cosine"
    warn_t_total = True

    def __init__(self, warmup: float = 0.002, t_total: float = -1, cycles: float = 0.5, **kwargs: Any):
        super().__init__(warmup=warmup, t_total=t_total, **kwargs)
        self.cycles = cycles

    def get_lr_(self, progress: float) -> float:
        if progress < self.warmup:
            return progress / self.warmup
        progress = (progress - self.warmup) / max(1e-6, 1.0 - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * self.cycles * 2 * progress))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "cycles": self.cycles}


SCHEDULES: dict[Optional[str], type[_LRSchedule]] = {
    None: ConstantLR,
    "none": ConstantLR,
    "warmup_cosine": WarmupCosineSchedule,
    "warmup_constant": WarmupConstantSchedule,
    "warmup_linear": WarmupLinearSchedule,
}


def make_schedule(schedule: Union[str, None, _LRSchedule], warmup: float = -1, t_total: float = -1) -> _LRSchedule:
    if isinstance(schedule, _LRSchedule):
        return schedule
    if schedule not in SCHEDULES:
        raise InputError(f"invalid schedule '{schedule}': expected one of {[name for name in SCHEDULES if name]}")
    return SCHEDULES[schedule](warmup=warmup, t_total=t_total)


def _schedule_from_dict(spec: dict[str, Any]) -> _LRSchedule:
    spec = dict(spec)
    return SCHEDULES[spec.pop("name")](**spec)


class BertAdam(Optimizer):
    """Adam with TinyBERT's modifications (see the module docstring).

    Params: lr; warmup (fraction of t_total, -1 = none); t_total (-1 = no schedule); schedule (a name in
    SCHEDULES or a schedule object); b1, b2; e (epsilon); weight_decay; max_grad_norm (per tensor, -1 = off).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = required,
        warmup: float = -1,
        t_total: float = -1,
        schedule: Union[str, None, _LRSchedule] = "warmup_linear",
        b1: float = 0.9,
        b2: float = 0.999,
        e: float = 1e-6,
        weight_decay: float = 0.01,
        max_grad_norm: float = 1.0,
        **kwargs: Any,
    ):
        if lr is not required and lr < 0.0:
            raise InputError(f"invalid learning rate {lr}: should be >= 0.0")
        if not 0.0 <= b1 < 1.0:
            raise InputError(f"invalid b1 parameter {b1}: should be in [0.0, 1.0)")
        if not 0.0 <= b2 < 1.0:
            raise InputError(f"invalid b2 parameter {b2}: should be in [0.0, 1.0)")
        if not e >= 0.0:
            raise InputError(f"invalid epsilon value {e}: should be >= 0.0")
        if isinstance(schedule, _LRSchedule) and (warmup != -1 or t_total != -1):
            logger.warning(
                "warmup and t_total on the optimizer are ineffective when a schedule object is given; "
                "set them in the schedule object"
            )
        schedule = make_schedule(schedule, warmup, t_total)
        defaults = dict(
            lr=lr, schedule=schedule, b1=b1, b2=b2, e=e, weight_decay=weight_decay, max_grad_norm=max_grad_norm
        )
        super().__init__(params, defaults)

    def get_lr(self) -> list[float]:
        """The current learning rate of every parameter ([0] before the first step)."""
        lrs = []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if len(state) == 0:
                    return [0]
                lrs.append(group["lr"] * group["schedule"].get_lr(state["step"]))
        return lrs

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("BertAdam does not support sparse gradients, please consider SparseAdam instead")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["next_m"] = torch.zeros_like(p)
                    state["next_v"] = torch.zeros_like(p)
                if group["max_grad_norm"] > 0:
                    clip_grad_norm_(p, group["max_grad_norm"])
                grad = p.grad
                next_m, next_v = state["next_m"], state["next_v"]
                next_m.mul_(group["b1"]).add_(grad, alpha=1 - group["b1"])
                next_v.mul_(group["b2"]).addcmul_(grad, grad, value=1 - group["b2"])
                update = next_m / (next_v.sqrt() + group["e"])
                if group["weight_decay"] > 0.0:
                    update = update + group["weight_decay"] * p
                lr_scheduled = group["lr"] * group["schedule"].get_lr(state["step"])
                p.add_(update, alpha=-lr_scheduled)
                state["step"] += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        """As torch's, with each group's schedule as plain values (loadable by torch.load(weights_only=True))."""
        state = super().state_dict()
        for group in state["param_groups"]:
            group["schedule"] = group["schedule"].to_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = []
        for group in state_dict["param_groups"]:
            group = dict(group)
            if isinstance(group["schedule"], dict):
                group["schedule"] = _schedule_from_dict(group["schedule"])
            groups.append(group)
        super().load_state_dict({**state_dict, "param_groups": groups})

