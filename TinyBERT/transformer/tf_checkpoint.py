"""TF1 checkpoints of NEZHA and Google BERT (their original variable names) read as a PyTorch state dict.

TensorFlow is imported only inside read_tf_checkpoint, so the rest of the package never loads it.
Name map (the standard one): `/` -> `.`, `layer_K` -> `layer.K`, `kernel` -> `weight` (transposed),
`gamma` -> `weight`, `beta` -> `bias`, `output_weights` -> `weight`, `output_bias` -> `bias`,
`*_embeddings` -> `*_embeddings.weight`; the fine-tuning heads `output_*` (classifier, NER) ->
`classifier.*` and `cls/squad/output_*` -> `qa_outputs.*`. Optimizer slots (adam_m/v, lamb_m/v),
global_step and loss-scaling variables are skipped.
"""
from __future__ import annotations

import os
import re
from typing import Optional, Union

import numpy as np
import torch

from utils.errors import InputError
from utils.progress import progress_bar
from utils.training_state import is_training_state


def torch_name(tf_name: str) -> Optional[tuple[str, bool]]:
    """The state-dict key for a TF variable and whether its array must be transposed; None for variables to skip."""
    parts = tf_name.split("/")
    if is_training_state(tf_name):
        return None
    if parts[0] in ("output_weights", "output_bias") and len(parts) == 1:
        parts = ["classifier", parts[0]]
    if parts[:2] == ["cls", "squad"]:
        parts = ["qa_outputs"] + parts[2:]
    transpose = parts[-1] == "kernel"
    mapped = []
    for part in parts:
        layer = re.fullmatch(r"layer_(\d+)", part)
        if layer:
            mapped += ["layer", layer.group(1)]
        elif part in ("kernel", "gamma", "output_weights"):
            mapped.append("weight")
        elif part in ("beta", "output_bias"):
            mapped.append("bias")
        else:
            mapped.append(part)
    if parts[-1].endswith("_embeddings"):
        mapped.append("weight")
    return ".".join(mapped), transpose


def find_tf_checkpoint(path: Union[str, os.PathLike]) -> str:
    """The checkpoint prefix for a prefix, or for a directory: model.ckpt there, else its highest model.ckpt-N."""
    path = os.fspath(path)
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isdir(path):
        prefixes = [name[: -len(".index")] for name in os.listdir(path) if name.endswith(".index")]
        if "model.ckpt" in prefixes:
            return os.path.join(path, "model.ckpt")
        if prefixes:
            def step(prefix: str) -> int:
                found = re.search(r"-(\d+)$", prefix)
                return int(found.group(1)) if found else -1

            return os.path.join(path, max(prefixes, key=step))
    raise InputError("no TensorFlow checkpoint here (expected PREFIX.index and PREFIX.data-* files)", path)


def read_tf_checkpoint(path: Union[str, os.PathLike]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Return (state dict, names of the skipped variables) for a TF1 checkpoint prefix or directory."""
    prefix = find_tf_checkpoint(path)
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as err:
        raise InputError(f"cannot read the TensorFlow checkpoint ({type(err).__name__})", prefix) from None
    state_dict: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for name in progress_bar(sorted(reader.get_variable_to_shape_map()), desc="reading checkpoint", unit="tensors"):
        mapped = torch_name(name)
        if mapped is None:
            skipped.append(name)
            continue
        key, transpose = mapped
        array = np.asarray(reader.get_tensor(name))
        if transpose:
            array = array.T
        state_dict[key] = torch.from_numpy(np.ascontiguousarray(array))
    return state_dict, skipped
