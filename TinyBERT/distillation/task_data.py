"""Task examples -> padded id tensors, as TinyBERT's task_distill.py built them; and label-order mapping.

`[CLS] a [SEP] b [SEP]` with segment ids 0/1 (utils.features.encode_pair: the pair truncated from the end of
the longer text, ties shorten b; a single text truncated to max_seq_length - 2; zero padding); classification
labels are indices into the processor's label list, regression labels floats.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch
from torch.utils.data import TensorDataset

from utils.errors import InputError
from utils.features import encode_pair
from utils.tasks import InputExample

logger = logging.getLogger(__name__)


@dataclass
class InputFeatures:
    input_ids: list[int]
    input_mask: list[int]
    segment_ids: list[int]
    label_id: float | int
    seq_length: int


def convert_examples_to_features(
    examples: Sequence[InputExample],
    label_list: Sequence[Optional[str]],
    max_seq_length: int,
    tokenizer: Any,
    output_mode: str,
) -> list[InputFeatures]:
    """Tokenize, truncate, add [CLS]/[SEP], pad to max_seq_length; labels by position in label_list."""
    if max_seq_length < 3:
        raise InputError(f"--max_seq_length must be at least 3 ([CLS] text [SEP]), got {max_seq_length}")
    label_map = {label: i for i, label in enumerate(label_list)}
    features = []
    for index, example in enumerate(examples):
        tokens_a = tokenizer.tokenize(example.text_a)
        tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
        if tokens_b == []:  # b of blanks only: the original cut a to a pair's length, wrote no second segment
            tokens_a, tokens_b = tokens_a[:max_seq_length - 3], None
        encoded = encode_pair(tokens_a, tokens_b, max_seq_length, tokenizer)
        if output_mode == "classification":
            if example.label not in label_map:
                raise InputError(f"example {example.guid}: label {example.label!r} is not one of {list(label_list)}")
            label_id: float | int = label_map[example.label]
        else:
            label_id = float(example.label)
        if index == 0:
            logger.info("*** Example *** guid: %s tokens: %s label: %s (id = %s)",
                        example.guid, " ".join(encoded.tokens), example.label, label_id)
        features.append(InputFeatures(encoded.input_ids, encoded.input_mask, encoded.segment_ids, label_id,
                                      len(encoded.tokens)))
    return features


def get_tensor_data(output_mode: str, features: Sequence[InputFeatures]) -> TensorDataset:
    """TensorDataset(input_ids, input_mask, segment_ids, label_ids, seq_lengths), the original's order."""
    label_dtype = torch.long if output_mode == "classification" else torch.float
    return TensorDataset(
        torch.tensor([f.input_ids for f in features], dtype=torch.long),
        torch.tensor([f.input_mask for f in features], dtype=torch.long),
        torch.tensor([f.segment_ids for f in features], dtype=torch.long),
        torch.tensor([f.label_id for f in features], dtype=label_dtype),
        torch.tensor([f.seq_length for f in features], dtype=torch.long),
    )


_GENERIC_LABEL = re.compile(r"^LABEL_(\d+)$")


def config_label_names(config: Mapping[str, Any]) -> Optional[list[str]]:
    """Label names by output index from a config's id2label (or label2id), or None when it has neither.

    Hugging Face's placeholder names LABEL_0, LABEL_1, ... carry no order information and give None.
    """
    names: Optional[list[str]] = None
    id2label = config.get("id2label")
    label2id = config.get("label2id")
    try:
        if isinstance(id2label, Mapping) and id2label:
            by_index = {int(index): str(name) for index, name in id2label.items()}
        elif isinstance(label2id, Mapping) and label2id:
            by_index = {int(index): str(name) for name, index in label2id.items()}
        else:
            return None
    except (TypeError, ValueError):
        raise InputError("config: id2label/label2id must map integer ids to label names") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise InputError(f"config: the label ids {sorted(by_index)} are not 0..{len(by_index) - 1}")
    names = [by_index[i] for i in range(len(by_index))]
    if all(_GENERIC_LABEL.match(name) and int(name[6:]) == i for i, name in enumerate(names)):
        return None
    return names


def config_num_labels(config: Mapping[str, Any]) -> Optional[int]:
    """The label count a config declares (id2label, label2id or num_labels), or None."""
    for key in ("id2label", "label2id"):
        if isinstance(config.get(key), Mapping) and config[key]:
            return len(config[key])
    if isinstance(config.get("num_labels"), int):
        return config["num_labels"]
    return None


def label_permutation(
    model_labels: Optional[Sequence[str]], task_labels: Sequence[Optional[str]], model_path: str
) -> Optional[list[int]]:
    """Column indices that reorder a model's logits into the task's label order, or None when it is the same.

    model_labels: the model's label names by output index (None: assume the task's order). Names are
    compared case-insensitively (Hugging Face MNLI teachers say CONTRADICTION / ENTAILMENT / NEUTRAL).
    """
    if model_labels is None or task_labels == [None]:
        return None
    by_name = {name.lower(): index for index, name in enumerate(model_labels)}
    wanted = [str(label).lower() for label in task_labels]
    if len(by_name) != len(model_labels) or sorted(by_name) != sorted(wanted):
        raise InputError(
            f"the model's labels {list(model_labels)} (config id2label) are not the task's labels {list(task_labels)}",
            model_path,
        )
    permutation = [by_name[name] for name in wanted]
    return None if permutation == list(range(len(permutation))) else permutation
