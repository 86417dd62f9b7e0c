"""A NEZHA or Google BERT TF1 checkpoint turned into a PyTorch model directory (the original's to-do: NEZHA as teacher)."""
from __future__ import annotations

import logging
import os
from typing import Optional, Union

import torch

from utils.errors import InputError
from utils.model_config import check_vocab_fits
from utils.tokenization import load_vocab

from .checkpoints import export_config, write_model_directory
from .modeling import BertConfig, BertModel
from .tf_checkpoint import read_tf_checkpoint

logger = logging.getLogger(__name__)

MODEL_TYPES = ("nezha", "bert")


def converted_config(bert_config_file: Union[str, os.PathLike], model_type: Optional[str]) -> BertConfig:
    """The TF config with what the TF code hard-wired made explicit.

    NEZHA: use_relative_position true and max_relative_position (64, the TF code's constant, unless the
    file sets it). Both models: TF's "gelu" is the tanh form, so it becomes "gelu_new".
    """
    config = BertConfig.from_json_file(bert_config_file)
    if model_type is None:
        model_type = "nezha" if config.use_relative_position else "bert"
    if model_type not in MODEL_TYPES:
        raise InputError(f"unknown model type '{model_type}': expected one of {list(MODEL_TYPES)}")
    config.use_relative_position = model_type == "nezha"
    if config.use_relative_position:
        config.__dict__.setdefault("max_relative_position", BertConfig.max_relative_position)
    if config.hidden_act == "gelu":
        config.hidden_act = "gelu_new"
    return config


def _check_encoder(state_dict: dict[str, torch.Tensor], config: BertConfig, checkpoint: str) -> None:
    """Every encoder tensor the config implies must be in the checkpoint, with the config's shape."""
    with torch.device("meta"):
        expected = {"bert." + key: tuple(value.shape) for key, value in BertModel(config).state_dict().items()}
    missing = [key for key in expected if key not in state_dict]
    if missing:
        raise InputError(
            f"the checkpoint lacks {len(missing)} encoder variables the config implies, e.g. {missing[:3]} "
            "(is the config, or --model_type, the one this checkpoint was trained with?)",
            checkpoint,
        )
    for key, shape in expected.items():
        if tuple(state_dict[key].shape) != shape:
            raise InputError(
                f"tensor '{key}' has shape {tuple(state_dict[key].shape)} in the checkpoint but {shape} from the config",
                checkpoint,
            )


def read_label_list(path: Union[str, os.PathLike]) -> list[str]:
    """The labels of NEZHA-TensorFlow's label_list.txt (one per line, in logit order)."""
    if not os.path.isfile(path):
        raise InputError("label list not found (expected label_list.txt, one label per line)", path)
    with open(path, encoding="utf-8") as handle:
        labels = [line.rstrip("\n") for line in handle if line.strip()]
    if not labels:
        raise InputError("empty label list (expected one label per line)", path)
    if len(set(labels)) != len(labels):
        raise InputError(f"repeated labels in {labels}", path)
    return labels


def label_classifier(config: BertConfig, state_dict: dict[str, torch.Tensor],
                     label_list: Optional[Union[str, os.PathLike]]) -> None:
    """Describe a fine-tuned head `output_weights`/`output_bias` (now classifier.*) in the config.

    NEZHA-TensorFlow's run_classifier.py computes logits = pooled . W^T + b, without the ReLU of TinyBERT's
    head, so classifier_act is "none"; num_labels is the head's row count, and a label_list.txt gives
    id2label/label2id (the order of the logits, which task_distill.py maps onto the task's order).
    """
    num_labels = int(state_dict["classifier.weight"].shape[0])
    config.classifier_act = "none"
    config.num_labels = num_labels
    if label_list is None:
        return
    labels = read_label_list(label_list)
    if len(labels) != num_labels:
        raise InputError(f"{len(labels)} labels listed but the checkpoint's classifier has {num_labels} outputs",
                         label_list)
    config.id2label = {str(i): label for i, label in enumerate(labels)}
    config.label2id = {label: i for i, label in enumerate(labels)}


def convert_tf_checkpoint(
    tf_checkpoint: Union[str, os.PathLike],
    bert_config_file: Union[str, os.PathLike],
    vocab_file: Union[str, os.PathLike],
    output_dir: Union[str, os.PathLike],
    model_type: Optional[str] = None,
    label_list: Optional[Union[str, os.PathLike]] = None,
) -> dict[str, object]:
    """Write output_dir/{pytorch_model.bin, config.json, vocab.txt}; return what was converted and skipped.

    A checkpoint with a fine-tuned classifier head becomes a TinyBertForSequenceClassification directory
    (the teacher of task_distill.py) whose logits equal the TensorFlow model's.
    """
    config = converted_config(bert_config_file, model_type)
    check_vocab_fits(config.vocab_size, bert_config_file, load_vocab(vocab_file), vocab_file)
    state_dict, skipped = read_tf_checkpoint(tf_checkpoint)
    _check_encoder(state_dict, config, os.fspath(tf_checkpoint))
    if "classifier.weight" in state_dict:
        label_classifier(config, state_dict, label_list)
        heads = "ForSequenceClassification"
    elif label_list is not None:
        raise InputError("--label_list given but the checkpoint has no classifier head (output_weights, output_bias)",
                         os.fspath(tf_checkpoint))
    else:
        heads = "ForPreTraining" if "cls.predictions.bias" in state_dict else "Model"
    architecture = ("Nezha" if config.use_relative_position else "Bert") + heads
    write_model_directory(output_dir, state_dict, export_config(config.to_dict(), architecture), vocab_file)
    logger.info("converted %d tensors, skipped %d optimizer/bookkeeping variables", len(state_dict), len(skipped))
    return {"converted": sorted(state_dict), "skipped": skipped, "architecture": architecture}
