"""Reading pregenerate_training_data.py's epoch files back: epoch discovery and the original PregeneratedDataset.

Features are arrays of the epoch's fixed sequence length, in memory or (reduce_memory) as np.memmap files in
a temporary directory the caller chooses (the original wrote them to a hard-coded /cache). NumPy 2 dtypes
replace the removed np.int / np.bool.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from utils.errors import InputError

logger = logging.getLogger(__name__)

INSTANCE_KEYS = ("tokens", "segment_ids", "is_random_next", "masked_lm_positions", "masked_lm_labels")


def epoch_paths(directory: Union[str, os.PathLike], epoch: int) -> tuple[Path, Path]:
    directory = Path(directory)
    return directory / f"epoch_{epoch}.json", directory / f"epoch_{epoch}_metrics.json"


def read_metrics(path: Union[str, os.PathLike]) -> dict:
    try:
        with open(path, encoding="utf-8") as reader:
            metrics = json.load(reader)
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err.msg})", path, err.lineno) from None
    if not isinstance(metrics, dict) or not all(isinstance(metrics.get(k), int) for k in ("num_training_examples", "max_seq_len")):
        raise InputError('expected {"num_training_examples": <int>, "max_seq_len": <int>}', path)
    return metrics


def discover_epochs(pregenerated_data: Union[str, os.PathLike], num_train_epochs: float) -> tuple[list[int], float]:
    """(examples per data epoch, num_data_epochs), as the original: epochs are reused cyclically when fewer exist.

    Looks for epoch_{i}.json and epoch_{i}_metrics.json for i < int(num_train_epochs); none at all is an error.
    """
    directory = Path(pregenerated_data)
    if not directory.is_dir():
        raise InputError("pregenerated data directory not found", directory)
    samples_per_epoch: list[int] = []
    for i in range(int(num_train_epochs)):
        epoch_file, metrics_file = epoch_paths(directory, i)
        if epoch_file.is_file() and metrics_file.is_file():
            samples_per_epoch.append(read_metrics(metrics_file)["num_training_examples"])
            continue
        if i == 0:
            raise InputError(
                "no training data was found: expected epoch_0.json and epoch_0_metrics.json "
                "(written by pregenerate_training_data.py)", directory
            )
        logger.warning("Only %d epochs of data are available (%s); they will be reused for %s training epochs",
                       i, directory, num_train_epochs)
        return samples_per_epoch, float(i)
    return samples_per_epoch, float(num_train_epochs)


@dataclass
class InputFeatures:
    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    lm_label_ids: np.ndarray
    is_next: bool


def convert_example_to_features(example: dict, tokenizer, max_seq_length: int) -> InputFeatures:
    """Token ids, mask and segments padded with 0 to max_seq_length; LM labels -1 except at masked positions."""
    tokens = example["tokens"]
    segment_ids = example["segment_ids"]
    is_random_next = example["is_random_next"]
    masked_lm_positions = example["masked_lm_positions"]
    masked_lm_labels = example["masked_lm_labels"]
    if len(tokens) > max_seq_length:
        logger.info("len(tokens): %d > max_seq_length %d: truncated", len(tokens), max_seq_length)
        tokens = tokens[:max_seq_length]
    if len(tokens) != len(segment_ids):
        logger.info("len(tokens): %d != len(segment_ids): %d, using segment 0 everywhere", len(tokens), len(segment_ids))
        segment_ids = [0] * len(tokens)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    masked_label_ids = tokenizer.convert_tokens_to_ids(masked_lm_labels)

    input_array = np.zeros(max_seq_length, dtype=np.int32)
    input_array[: len(input_ids)] = input_ids
    mask_array = np.zeros(max_seq_length, dtype=np.bool_)
    mask_array[: len(input_ids)] = True
    segment_array = np.zeros(max_seq_length, dtype=np.bool_)
    segment_array[: len(segment_ids)] = segment_ids
    lm_label_array = np.full(max_seq_length, dtype=np.int32, fill_value=-1)
    kept = [(p, i) for p, i in zip(masked_lm_positions, masked_label_ids) if p < max_seq_length]
    if kept:
        positions, ids = zip(*kept)
        lm_label_array[list(positions)] = ids
    return InputFeatures(input_array, mask_array, segment_array, lm_label_array, bool(is_random_next))


def _check_instance(example, path: Path, line: int) -> None:
    if not isinstance(example, dict) or any(key not in example for key in INSTANCE_KEYS):
        raise InputError(f"expected a JSON object with keys {', '.join(INSTANCE_KEYS)}", path, line)
    if not example["tokens"] or len(example["masked_lm_positions"]) != len(example["masked_lm_labels"]):
        raise InputError("empty tokens, or masked_lm_positions and masked_lm_labels of different lengths", path, line)
    if any(not isinstance(p, int) or p < 0 or p >= len(example["tokens"]) for p in example["masked_lm_positions"]):
        raise InputError("masked_lm_positions must be indices into tokens", path, line)


class PregeneratedDataset(Dataset):
    """One epoch of pregenerated instances as five int64 tensors per item, the original's dataset.

    `epoch` is the training epoch; the data epoch read is int(epoch % num_data_epochs). With reduce_memory
    the arrays are np.memmap files in a temporary directory under `working_dir` (default: the system's),
    deleted by close().
    """

    def __init__(self, training_path: Union[str, os.PathLike], epoch: int, tokenizer, num_data_epochs: float,
                 reduce_memory: bool = False, working_dir: Optional[Union[str, os.PathLike]] = None,
                 show_progress: bool = True):
        self.vocab = tokenizer.vocab
        self.tokenizer = tokenizer
        self.epoch = epoch
        self.data_epoch = int(epoch % num_data_epochs)
        data_file, metrics_file = epoch_paths(training_path, self.data_epoch)
        if not data_file.is_file() or not metrics_file.is_file():
            raise InputError(f"epoch {self.data_epoch} data not found (expected {data_file.name} and "
                             f"{metrics_file.name})", training_path)
        metrics = read_metrics(metrics_file)
        num_samples = metrics["num_training_examples"]
        seq_len = metrics["max_seq_len"]
        self.seq_len = seq_len
        self._temp_dir = None
        if reduce_memory:
            if working_dir is not None:
                os.makedirs(working_dir, exist_ok=True)
            self._temp_dir = tempfile.TemporaryDirectory(prefix=".memmap_", dir=working_dir)
            folder = Path(self._temp_dir.name)

            def array(name, dtype, shape, fill=0):
                values = np.memmap(folder / f"{name}.memmap", mode="w+", dtype=dtype, shape=shape)
                values[:] = fill
                return values
        else:
            def array(name, dtype, shape, fill=0):
                return np.full(shape, fill, dtype=dtype)
        input_ids = array("input_ids", np.int32, (num_samples, seq_len))
        input_masks = array("input_masks", np.bool_, (num_samples, seq_len))
        segment_ids = array("segment_ids", np.bool_, (num_samples, seq_len))
        lm_label_ids = array("lm_label_ids", np.int32, (num_samples, seq_len), fill=-1)
        is_nexts = array("is_nexts", np.bool_, (num_samples,))
        logger.info("Loading training examples for epoch %d from %s", epoch, data_file)
        count = 0
        with open(data_file, encoding="utf-8") as reader:
            for line_number, line in enumerate(
                tqdm(reader, total=num_samples, desc="Training examples", disable=not show_progress), start=1
            ):
                if count >= num_samples:
                    raise InputError(f"more instances than num_training_examples = {num_samples} in {metrics_file.name}",
                                     data_file, line_number)
                try:
                    example = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(f"not a JSON instance ({err.msg})", data_file, line_number) from None
                _check_instance(example, data_file, line_number)
                features = convert_example_to_features(example, tokenizer, seq_len)
                input_ids[count] = features.input_ids
                segment_ids[count] = features.segment_ids
                input_masks[count] = features.input_mask
                lm_label_ids[count] = features.lm_label_ids
                is_nexts[count] = features.is_next
                count += 1
        if count != num_samples:
            raise InputError(f"{count} instances, but {metrics_file.name} says num_training_examples = {num_samples}",
                             data_file)
        logger.info("Loading complete!")
        self.num_samples = num_samples
        self.input_ids = input_ids
        self.input_masks = input_masks
        self.segment_ids = segment_ids
        self.lm_label_ids = lm_label_ids
        self.is_nexts = is_nexts

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, item: int):
        return (
            torch.tensor(self.input_ids[item].astype(np.int64)),
            torch.tensor(self.input_masks[item].astype(np.int64)),
            torch.tensor(self.segment_ids[item].astype(np.int64)),
            torch.tensor(self.lm_label_ids[item].astype(np.int64)),
            torch.tensor(int(self.is_nexts[item])),
        )

    def close(self) -> None:
        """Drop the arrays and delete the memmap files (reduce_memory)."""
        for name in ("input_ids", "input_masks", "segment_ids", "lm_label_ids", "is_nexts"):
            setattr(self, name, None)
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None
