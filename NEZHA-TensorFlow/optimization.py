"""NEZHA's training machinery: learning-rate schedule, AdamWeightDecay and LAMB, gradient clipping, dynamic
loss scaling, gradient accumulation and the train step that ties them to a data-parallel engine.

The formulas are those of the 2019 TF1 `optimization.py` (see the reference's section 2); every quirk that
defines the published numbers is kept. State lives in plain `tf.Variable`s named like the TF1 variables
(`global_step`, `<var>/lamb_m`, `<var>/adam_v`, `loss_scale`, `good_steps`, `bad_steps`), so a checkpoint
writer that takes a dict of name -> tensor writes the original names.
"""
from __future__ import annotations

import abc
import re
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence, Union

import tensorflow as tf
from absl import logging

from utils.errors import InputError

# The original's weight-decay exclusion list, matched with re.search on the TF1 variable name.
EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")

Batch = Any
LossOutput = Union[tf.Tensor, tuple]


def tf1_name(variable: tf.Variable) -> str:
    """The TF1 variable name: `var.name` without its `:0` output suffix (the model names variables so)."""
    return re.sub(r":\d+$", "", variable.name)


class WarmupPolynomialDecay:
    """Linear warmup from 0 to init_lr over W steps, then linear decay that reaches 0 at T.

    As the original, the decay starts from `adjusted_init_lr = init_lr / (1 - W/T)` so that it equals init_lr
    exactly at step W ("avoid step change at end of warmup"), computed in float32 like TF1's polynomial_decay.
    The original divides by zero when W == T; here W >= T means there is no decay phase: the rate rises to
    init_lr at step W and is 0 from then on (what the original gives for W > T, where the decay branch is
    only reached at steps >= W > T and evaluates to 0).
    """

    def __init__(self, init_lr: float, num_train_steps: int, num_warmup_steps: int):
        if num_train_steps <= 0:
            raise InputError(f"num_train_steps must be positive, got {num_train_steps}")
        if num_warmup_steps < 0:
            raise InputError(f"num_warmup_steps must not be negative, got {num_warmup_steps}")
        self.init_lr = float(init_lr)
        self.num_train_steps = int(num_train_steps)
        self.num_warmup_steps = int(num_warmup_steps)
        if self.num_warmup_steps >= self.num_train_steps or self.init_lr == 0.0:
            self.adjusted_init_lr = 0.0
        else:
            crossover = self.init_lr * (1.0 - self.num_warmup_steps / self.num_train_steps)
            self.adjusted_init_lr = self.init_lr * (self.init_lr / crossover)
            logging.info("decayed_learning_rate_at_crossover_point = %e, adjusted_init_lr = %e",
                         crossover, self.adjusted_init_lr)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.convert_to_tensor(step)
        step_float = tf.cast(step, tf.float32)
        total = tf.constant(float(self.num_train_steps), tf.float32)
        fraction = tf.minimum(step_float, total) / total
        decayed = tf.constant(self.adjusted_init_lr, tf.float32) * (1.0 - fraction)
        if not self.num_warmup_steps:
            return decayed
        warmup = tf.constant(self.init_lr, tf.float32) * (step_float / float(self.num_warmup_steps))
        return tf.where(step < tf.cast(self.num_warmup_steps, step.dtype), warmup, decayed)


class WeightDecayOptimizer(tf.Module, abc.ABC):
    """Shared part of AdamWeightDecay and LAMB: slots named `<var>/<prefix>_m|v`, decay exclusion by name."""

    slot_prefix = ""

    def __init__(self, learning_rate: Union[float, Callable[[tf.Tensor], tf.Tensor]], weight_decay_rate: float,
                 beta_1: float, beta_2: float, epsilon: float,
                 exclude_from_weight_decay: Optional[Sequence[str]], name: str):
        super().__init__(name=name)
        self.learning_rate = learning_rate
        self.weight_decay_rate = float(weight_decay_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.exclude_from_weight_decay = tuple(exclude_from_weight_decay or ())
        self._slots: dict[Any, tuple[tf.Variable, tf.Variable]] = {}

    def build(self, variables: Sequence[tf.Variable]) -> None:
        """Create the float32 zero slots of `variables` (eagerly, before any tf.function traces a step)."""
        for variable in variables:
            if variable.ref() in self._slots:
                continue
            name = tf1_name(variable)
            self._slots[variable.ref()] = (
                tf.Variable(tf.zeros(variable.shape, tf.float32), trainable=False,
                            name=f"{name}/{self.slot_prefix}_m"),
                tf.Variable(tf.zeros(variable.shape, tf.float32), trainable=False,
                            name=f"{name}/{self.slot_prefix}_v"),
            )

    def slot_variables(self, variables: Optional[Sequence[tf.Variable]] = None) -> dict[str, tf.Variable]:
        """TF1 name -> slot variable (`bert/.../kernel/lamb_m`), for all built variables or those given."""
        refs = self._slots if variables is None else [v.ref() for v in variables]
        return {tf1_name(slot): slot for ref in refs for slot in self._slots[ref]}

    def use_weight_decay(self, name: str) -> bool:
        if not self.weight_decay_rate:
            return False
        return not any(re.search(pattern, name) is not None for pattern in self.exclude_from_weight_decay)

    def current_learning_rate(self, global_step: tf.Tensor) -> tf.Tensor:
        if callable(self.learning_rate):
            return tf.cast(self.learning_rate(global_step), tf.float32)
        return tf.constant(self.learning_rate, tf.float32)

    def apply_gradients(self, grads_and_vars: Sequence[tuple[tf.Tensor, tf.Variable]],
                        global_step: tf.Tensor) -> tf.Tensor:
        """Update the variables (global_step is read, never incremented here) and return the learning rate."""
        lr = self.current_learning_rate(global_step)
        for grad, variable in grads_and_vars:
            if variable.ref() not in self._slots:
                raise ValueError(f"{self.name}: no slots for {variable.name}; call build() with it first")
            m, v = self._slots[variable.ref()]
            grad = tf.cast(grad, tf.float32)
            next_m = self.beta_1 * m + (1.0 - self.beta_1) * grad
            next_v = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad)
            step = self._update(grad, variable, next_m, next_v, lr, global_step)
            variable.assign_sub(step)
            m.assign(next_m)
            v.assign(next_v)
        return lr

    @abc.abstractmethod
    def _update(self, grad, variable, next_m, next_v, lr, global_step) -> tf.Tensor:
        """The amount to subtract from `variable`, given its new first and second moments."""


class AdamWeightDecay(WeightDecayOptimizer):
    """Google BERT's AdamWeightDecayOptimizer: Adam without bias correction, decoupled weight decay."""

    slot_prefix = "adam"

    def __init__(self, learning_rate: Union[float, Callable[[tf.Tensor], tf.Tensor]],
                 weight_decay_rate: float = 0.0, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-6, exclude_from_weight_decay: Optional[Sequence[str]] = None,
                 name: str = "AdamWeightDecayOptimizer"):
        super().__init__(learning_rate, weight_decay_rate, beta_1, beta_2, epsilon, exclude_from_weight_decay,
                         name)

    def _update(self, grad, variable, next_m, next_v, lr, global_step) -> tf.Tensor:
        update = next_m / (tf.sqrt(next_v) + self.epsilon)
        if self.use_weight_decay(tf1_name(variable)):
            update += self.weight_decay_rate * variable
        return lr * update


class LAMB(WeightDecayOptimizer):
    """NEZHA's LAMBOptimizer, quirks included (reference section 2.3).

    Bias correction uses t = global_step + 1 (the step before this update's increment: the original's read
    raced with the increment; here it is ordered). The trust ratio's norm puts epsilon inside the square root
    and always adds wd * w, even for variables excluded from weight decay; the update puts epsilon outside.
    """

    slot_prefix = "lamb"

    def __init__(self, learning_rate: Union[float, Callable[[tf.Tensor], tf.Tensor]],
                 weight_decay: float = 0.0, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-6,
                 exclude_from_weight_decay: Optional[Sequence[str]] = None, name: str = "Lamb"):
        super().__init__(learning_rate, weight_decay, beta_1, beta_2, epsilon, exclude_from_weight_decay, name)

    def _update(self, grad, variable, next_m, next_v, lr, global_step) -> tf.Tensor:
        t = tf.cast(global_step + 1, tf.float32)
        m_hat = next_m / (1.0 - tf.pow(self.beta_1, t))
        v_hat = next_v / (1.0 - tf.pow(self.beta_2, t))
        w_norm = tf.norm(variable)
        g_norm = tf.norm(grad)
        g_norm_hat = tf.norm(m_hat / tf.sqrt(v_hat + self.epsilon) + self.weight_decay_rate * variable)
        trust_ratio = tf.where((w_norm > 0.0) & (g_norm > 0.0), w_norm / g_norm_hat, 1.0)
        trust_ratio = tf.clip_by_value(trust_ratio, 0.0, 10.0)
        update = m_hat / (tf.sqrt(v_hat) + self.epsilon)
        if self.use_weight_decay(tf1_name(variable)):
            update += self.weight_decay_rate * variable
        return trust_ratio * lr * update


def create_optimizer(init_lr: float, num_train_steps: int, num_warmup_steps: int, optimizer: str = "adam",
                     weight_decay_rate: float = 0.01,
                     exclude_from_weight_decay: Sequence[str] = EXCLUDE_FROM_WEIGHT_DECAY) -> WeightDecayOptimizer:
    """The original's choices: `adam` (fine-tuning default) or `lamb` (pretraining default), wd 0.01.

    Under Horovod the original multiplied init_lr by the number of ranks before this call: the caller does
    that with `engine.scale_learning_rate(init_lr)`.
    """
    schedule = WarmupPolynomialDecay(init_lr, num_train_steps, num_warmup_steps)
    if optimizer == "adam":
        logging.info("*** AdamWeightDecayOptimizer selected ***")
        return AdamWeightDecay(schedule, weight_decay_rate=weight_decay_rate, beta_1=0.9, beta_2=0.999,
                               epsilon=1e-6, exclude_from_weight_decay=exclude_from_weight_decay)
    if optimizer == "lamb":
        logging.info("*** LAMBOptimizer selected ***")
        return LAMB(schedule, weight_decay=weight_decay_rate, exclude_from_weight_decay=exclude_from_weight_decay)
    raise ValueError(f"Unsupported optimizer option: {optimizer}")


class DynamicLossScale(tf.Module):
    """TF 1.13 contrib ExponentialUpdateLossScaleManager, as the original configured it.

    Finite step: good_steps += 1; on reaching incr_every_n_steps the scale is multiplied by incr_ratio (if that
    stays finite) and both counters reset. Non-finite step: good_steps = 0, bad_steps += 1; on reaching
    decr_every_n_nan_or_inf the scale becomes max(1, scale * decr_ratio) and both counters reset. Bad steps
    are only reset by a change of scale, so they need not be consecutive.
    """

    def __init__(self, init_loss_scale: float = 2.0 ** 32, incr_every_n_steps: int = 1000,
                 decr_every_n_nan_or_inf: int = 2, incr_ratio: float = 2.0, decr_ratio: float = 0.5):
        super().__init__(name="loss_scale_manager")
        self.incr_every_n_steps = int(incr_every_n_steps)
        self.decr_every_n_nan_or_inf = int(decr_every_n_nan_or_inf)
        self.incr_ratio = float(incr_ratio)
        self.decr_ratio = float(decr_ratio)
        self.loss_scale = tf.Variable(float(init_loss_scale), dtype=tf.float32, trainable=False, name="loss_scale")
        self.good_steps = tf.Variable(0, dtype=tf.int32, trainable=False, name="good_steps")
        self.bad_steps = tf.Variable(0, dtype=tf.int32, trainable=False, name="bad_steps")

    def update(self, finite: tf.Tensor) -> None:
        scale, good, bad = self.loss_scale.read_value(), self.good_steps.read_value(), self.bad_steps.read_value()
        grow = finite & (good + 1 >= self.incr_every_n_steps)
        shrink = ~finite & (bad + 1 >= self.decr_every_n_nan_or_inf)
        grown = scale * self.incr_ratio
        new_scale = tf.where(grow & tf.math.is_finite(grown), grown, scale)
        new_scale = tf.where(shrink, tf.maximum(1.0, scale * self.decr_ratio), new_scale)
        reset = grow | shrink
        self.loss_scale.assign(new_scale)
        self.good_steps.assign(tf.where(reset | ~finite, 0, good + 1))
        self.bad_steps.assign(tf.where(reset, 0, tf.where(finite, bad, bad + 1)))

    def state_variables(self) -> dict[str, tf.Variable]:
        return {tf1_name(v): v for v in (self.loss_scale, self.good_steps, self.bad_steps)}


class GradientReducer(Protocol):
    """What the train step needs from a data-parallel engine (distribution.py): a mean all-reduce."""

    def all_reduce(self, tensors: Sequence[tf.Tensor]) -> list[tf.Tensor]: ...


def _split_loss(output: LossOutput) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    if isinstance(output, tuple):
        loss, extras = output
        return loss, dict(extras)
    return output, {}


class TrainStep(tf.Module):
    """One optimiser step: loss -> scaled gradients (summed over gradient_accumulation_steps micro-batches) ->
    engine mean all-reduce -> unscale -> finite check -> global-norm clip -> apply or skip -> global_step and
    loss-scale update.

    The gradient and update parts are each one tf.function (XLA-compiled with use_xla); the all-reduce runs
    between them, outside XLA: Horovod's collectives have no XLA kernels in this build (install_horovod.sh
    drops xla_mpi_ops.cc), and the original's XLA (auto-clustering, global_jit_level ON_1) likewise compiled
    only what it could, around the collectives.
    Call it from eager Python, not inside another tf.function: `result = step(batches)`.
    """

    def __init__(self, loss_fn: Callable[[Batch], LossOutput], variables: Sequence[tf.Variable],
                 optimizer: WeightDecayOptimizer, engine: Optional[GradientReducer] = None,
                 loss_scale: Optional[DynamicLossScale] = None, gradient_accumulation_steps: int = 1,
                 clip_norm: float = 1.0, use_xla: bool = False):
        super().__init__(name="train_step")
        if gradient_accumulation_steps < 1:
            raise InputError(f"gradient_accumulation_steps must be at least 1, got {gradient_accumulation_steps}")
        self.loss_fn = loss_fn
        self.variables_to_train = list(variables)
        self.optimizer = optimizer
        self.engine = engine
        self.loss_scale = loss_scale
        self.gradient_accumulation_steps = int(gradient_accumulation_steps)
        self.clip_norm = float(clip_norm)
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        optimizer.build(self.variables_to_train)
        self.accumulators = None
        if self.gradient_accumulation_steps > 1:
            self.accumulators = [tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False,
                                             name=f"{tf1_name(v)}/accum_grad") for v in self.variables_to_train]
        self._has_gradient: Optional[list[bool]] = None
        self._gradients_fn = tf.function(self._gradients, jit_compile=use_xla)
        self._accumulate_fn = tf.function(self._accumulate, jit_compile=use_xla)
        self._apply_fn = tf.function(self._apply, jit_compile=use_xla)

    def _current_scale(self) -> tf.Tensor:
        return self.loss_scale.loss_scale.read_value() if self.loss_scale is not None else tf.constant(1.0)

    def _gradients(self, batch: Batch) -> tuple[tf.Tensor, dict[str, tf.Tensor], list[tf.Tensor]]:
        with tf.GradientTape() as tape:
            loss, extras = _split_loss(self.loss_fn(batch))
            loss = tf.cast(loss, tf.float32)
            scaled = loss * self._current_scale() if self.loss_scale is not None else loss
        grads = tape.gradient(scaled, self.variables_to_train)
        self._has_gradient = [g is not None for g in grads]
        dense = [tf.cast(tf.convert_to_tensor(g), tf.float32) for g in grads if g is not None]
        return loss, extras, dense

    def _accumulate(self, batch: Batch) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        loss, extras, grads = self._gradients(batch)
        accumulators = [a for a, has in zip(self.accumulators, self._has_gradient) if has]
        for accumulator, grad in zip(accumulators, grads):
            accumulator.assign_add(grad)
        return loss, extras

    def _apply(self, grads: list[tf.Tensor]) -> dict[str, tf.Tensor]:
        variables = self.trained_variables()
        scale = self._current_scale()
        factor = 1.0 / self.gradient_accumulation_steps
        if self.loss_scale is not None:
            factor = factor * tf.math.reciprocal(scale)
        grads = [g * factor for g in grads]
        if self.loss_scale is not None:
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        else:
            finite = tf.constant(True)
        grad_norm = tf.linalg.global_norm(grads)
        clipped, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=tf.where(finite, grad_norm, 1.0))
        global_step = self.global_step.read_value()
        learning_rate = self.optimizer.current_learning_rate(global_step)

        def apply() -> tf.Tensor:
            self.optimizer.apply_gradients(list(zip(clipped, variables)), global_step)
            return tf.constant(True)

        applied = tf.cond(finite, apply, lambda: tf.constant(False)) if self.loss_scale is not None else apply()
        self.global_step.assign_add(tf.cast(applied, tf.int64))
        if self.loss_scale is not None:
            self.loss_scale.update(finite)
        if self.accumulators is not None:
            for accumulator in self.accumulators:
                accumulator.assign(tf.zeros_like(accumulator))
        return {"learning_rate": learning_rate, "loss_scale": scale, "grad_norm": grad_norm, "applied": applied,
                "global_step": self.global_step.read_value()}

    def trained_variables(self) -> list[tf.Variable]:
        """The variables that receive gradients (known once the first step has been traced)."""
        if self._has_gradient is None:
            return list(self.variables_to_train)
        return [v for v, has in zip(self.variables_to_train, self._has_gradient) if has]

    def __call__(self, batches: Iterator[Batch]) -> dict[str, tf.Tensor]:
        """Take gradient_accumulation_steps micro-batches from `batches` and make one optimiser step.

        Returns the mean loss (and mean extras) of this rank's micro-batches, the learning rate and loss scale
        used, the global gradient norm before clipping, whether the update was applied, and global_step.
        """
        if self.accumulators is None:
            loss, extras, grads = self._gradients_fn(next(batches))
            losses, extras_list = [loss], [extras]
        else:
            losses, extras_list = [], []
            for _ in range(self.gradient_accumulation_steps):
                loss, extras = self._accumulate_fn(next(batches))
                losses.append(loss)
                extras_list.append(extras)
            grads = [a.read_value() for a, has in zip(self.accumulators, self._has_gradient) if has]
        if self.engine is not None:
            grads = self.engine.all_reduce(grads)
        result = self._apply_fn(list(grads))
        result["loss"] = tf.add_n(losses) / len(losses)
        for key in extras_list[0]:
            result[key] = tf.add_n([e[key] for e in extras_list]) / len(extras_list)
        return result

    def state_variables(self) -> dict[str, tf.Variable]:
        """TF1 name -> variable for the training state a checkpoint holds besides the model weights:
        global_step, the optimiser slots of the trained variables, and loss_scale/good_steps/bad_steps."""
        state = {"global_step": self.global_step}
        state.update(self.optimizer.slot_variables(self.trained_variables()))
        if self.loss_scale is not None:
            state.update(self.loss_scale.state_variables())
        return state


def build_train_step(loss_fn: Callable[[Batch], LossOutput], variables: Sequence[tf.Variable],
                     optimizer: WeightDecayOptimizer, engine: Optional[GradientReducer] = None,
                     loss_scaling: bool = False, gradient_accumulation_steps: int = 1, use_xla: bool = False,
                     clip_norm: float = 1.0, loss_scale: Optional[DynamicLossScale] = None) -> TrainStep:
    """The original's gradient path around `optimizer`.

    loss_scaling (the original: `--use_fp16 or --manual_fp16`) turns on its dynamic loss scaling (2^32, x2 per
    1000 finite steps, x0.5 per 2 non-finite ones); pass `loss_scale` for other settings. Without it, as in
    the original, every step is applied, finite or not.
    """
    if loss_scaling and loss_scale is None:
        loss_scale = DynamicLossScale()
    return TrainStep(loss_fn, variables, optimizer, engine=engine, loss_scale=loss_scale,
                     gradient_accumulation_steps=gradient_accumulation_steps, clip_norm=clip_norm,
                     use_xla=use_xla)
