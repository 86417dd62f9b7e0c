"""Which TF1 checkpoint names are training state rather than model weights.

Released NEZHA and Google BERT checkpoints, TF1 Adam runs and our own pretraining checkpoints hold, beside
the weights, optimizer slots, the step counter and loss-scaling state. A model load skips them unless asked
for them by name: NEZHA-TensorFlow/checkpoint.py (the TF loader) and TinyBERT/transformer/tf_checkpoint.py
(the PyTorch converter) both decide with `is_training_state`.
"""
from __future__ import annotations

# Last name component of an optimizer slot: AdamWeightDecay (`<var>/adam_m|adam_v`), LAMB, tf.train.Adam
# (`<var>/Adam|Adam_1`) and our gradient accumulators.
SLOT_SUFFIXES = ("adam_m", "adam_v", "lamb_m", "lamb_v", "Adam", "Adam_1", "accum_grad")
# Last name component of a bookkeeping variable: the step counter, Adam's beta powers, and the loss-scale
# state of TF 1.13 contrib and of optimization.DynamicLossScale.
STATE_VARIABLES = ("global_step", "beta1_power", "beta2_power", "loss_scale", "current_loss_scale",
                   "good_steps", "bad_steps")
# Scopes that hold nothing but training state, wherever they appear in a name.
STATE_SCOPES = ("AdamWeightDecayOptimizer", "LossScale")


def is_training_state(name: str) -> bool:
    """Whether a TF1 variable name (`bert/.../kernel/lamb_m`, `global_step`) is training state."""
    last = name.rsplit("/", 1)[-1]
    return last in SLOT_SUFFIXES or last in STATE_VARIABLES or any(scope in name for scope in STATE_SCOPES)
