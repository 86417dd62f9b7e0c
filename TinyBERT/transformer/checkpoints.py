"""Model directories on disk: finding their files, reading every weights format, renaming keys, writing them.

Reads what the 2019 code and its neighbours wrote: original TinyBERT `pytorch_model.bin` (LayerNorm
`gamma`/`beta`, `bert.` prefix or not), Google BERT converted to PyTorch, Hugging Face BERT and NEZHA
(`pytorch_model.bin` or `model.safetensors`, `position_ids` buffers), `config.json` or `bert_config.json`,
and TF1 checkpoints through tf_checkpoint.py. Writes directories Hugging Face `AutoModel` loads.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Union

import torch
from torch import nn

from utils.errors import InputError
from utils.fileio import atomic_open, write_json

from .file_utils import (
    BERT_CONFIG_NAME,
    CONFIG_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_NAME,
    NotFoundError,
    cached_path,
    is_remote,
)
from .tf_checkpoint import find_tf_checkpoint, read_tf_checkpoint

logger = logging.getLogger(__name__)

CONFIG_NAMES = (CONFIG_NAME, BERT_CONFIG_NAME)
WEIGHTS_NAMES = (WEIGHTS_NAME, SAFE_WEIGHTS_NAME)
VOCAB_NAME = "vocab.txt"
ENCODER_PREFIX = "bert."
# Prefixes other code bases give the encoder inside a model with heads.
_FOREIGN_ENCODER_PREFIXES = ("nezha.",)
_ENCODER_MODULES = ("embeddings.", "encoder.", "pooler.")
_IGNORED_KEY = re.compile(r"(^|\.)position_ids$")


@dataclass
class ModelFiles:
    config: str
    weights: Optional[str]


def find_config_file(directory: Union[str, os.PathLike]) -> str:
    """config.json, else Google's bert_config.json (the original read only the former)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise InputError("model directory not found", directory)
    for name in CONFIG_NAMES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise InputError(f"no {' or '.join(CONFIG_NAMES)} in the model directory", directory)


def _find_weights_file(directory: str, from_tf: bool) -> str:
    if from_tf:
        return find_tf_checkpoint(directory)
    for name in WEIGHTS_NAMES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    hint = ""
    if any(name.endswith(".index") for name in os.listdir(directory)):
        hint = " (it holds a TensorFlow checkpoint: convert it with convert_nezha_checkpoint.py or pass from_tf=True)"
    raise InputError(f"no {' or '.join(WEIGHTS_NAMES)} in the model directory{hint}", directory)


def _files_in_directory(directory: str, weights: bool, from_tf: bool) -> ModelFiles:
    return ModelFiles(find_config_file(directory), _find_weights_file(directory, from_tf) if weights else None)


def _first_remote(base_url: str, names: tuple[str, ...], cache_dir) -> str:
    for name in names:
        try:
            return cached_path(base_url.rstrip("/") + "/" + name, cache_dir)
        except NotFoundError:
            continue
    raise InputError(f"none of {', '.join(names)} found under this URL", base_url)


def _is_archive_name(name: str) -> bool:
    return name.endswith((".tar.gz", ".tgz", ".tar"))


@contextlib.contextmanager
def resolve_model_files(
    path_or_url: Union[str, os.PathLike],
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    weights: bool = True,
    from_tf: bool = False,
) -> Iterator[ModelFiles]:
    """Local paths of a model's config and weights.

    Accepts a directory; a .tar.gz archive of one (pytorch-pretrained-bert's release format), local or at
    a URL, extracted to a temporary directory that lives as long as the context; or a URL prefix under
    which the files sit one by one (as on a model hub), each downloaded through the cache.
    """
    name = os.fspath(path_or_url)
    if is_remote(name) and not _is_archive_name(name):
        if from_tf:
            raise InputError("from_tf needs a local directory holding the TensorFlow checkpoint", name)
        yield ModelFiles(
            _first_remote(name, CONFIG_NAMES, cache_dir),
            _first_remote(name, WEIGHTS_NAMES, cache_dir) if weights else None,
        )
        return
    local = cached_path(name, cache_dir)
    if os.path.isdir(local):
        yield _files_in_directory(local, weights, from_tf)
        return
    if not tarfile.is_tarfile(local):
        raise InputError("expected a model directory (config.json + pytorch_model.bin) or a .tar.gz archive of one", local)
    with tempfile.TemporaryDirectory(prefix="bert_archive_") as tmp:
        try:
            with tarfile.open(local) as archive:
                archive.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise InputError(f"cannot extract the model archive ({err})", local) from None
        entries = os.listdir(tmp)
        root = os.path.join(tmp, entries[0]) if len(entries) == 1 and os.path.isdir(os.path.join(tmp, entries[0])) else tmp
        yield _files_in_directory(root, weights, from_tf)


def read_weights(path: Union[str, os.PathLike], from_tf: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from pytorch_model.bin (any torch.save of tensors), model.safetensors or a TF1 checkpoint.

    A truncated or foreign file is an InputError naming it, not a zip or pickle traceback.
    """
    path = os.fspath(path)
    if from_tf:
        state_dict, _ = read_tf_checkpoint(path)
        return state_dict
    if not os.path.isfile(path):
        raise InputError("weights file not found", path)
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise InputError(f"cannot read the safetensors weights, the file is truncated or corrupt ({err})", path) from None
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot read the PyTorch weights, the file is truncated or corrupt ({first_line})", path) from None
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise InputError("expected a state dict (a mapping of names to tensors) in the weights file", path)
    return dict(state_dict)


def normalize_state_dict(state_dict: Mapping[str, torch.Tensor], expected_keys: set[str]) -> dict[str, torch.Tensor]:
    """Rename a checkpoint's keys to this package's names.

    LayerNorm `gamma`/`beta` become `weight`/`bias` (TF-era names, as the original's loader did);
    Hugging Face `position_ids` buffers are dropped; the encoder prefix is added or stripped so that a
    bare encoder and a model with heads load from each other's checkpoints; Hugging Face's duplicate
    of the MLM bias (`cls.predictions.decoder.bias`) stands in for `cls.predictions.bias` when needed.
    """
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if _IGNORED_KEY.search(key):
            continue
        key = re.sub(r"\.gamma$", ".weight", key)
        key = re.sub(r"\.beta$", ".bias", key)
        for foreign in _FOREIGN_ENCODER_PREFIXES:
            if key.startswith(foreign):
                key = ENCODER_PREFIX + key[len(foreign):]
        renamed[key] = value

    model_has_prefix = any(key.startswith(ENCODER_PREFIX) for key in expected_keys)
    checkpoint_has_prefix = any(key.startswith(ENCODER_PREFIX) for key in renamed)
    if checkpoint_has_prefix and not model_has_prefix:
        renamed = {k[len(ENCODER_PREFIX):] if k.startswith(ENCODER_PREFIX) else k: v for k, v in renamed.items()}
    elif model_has_prefix and not checkpoint_has_prefix:
        renamed = {ENCODER_PREFIX + k if k.startswith(_ENCODER_MODULES) else k: v for k, v in renamed.items()}

    decoder_bias = "cls.predictions.decoder.bias"
    if decoder_bias in renamed and decoder_bias not in expected_keys:
        bias = renamed.pop(decoder_bias)
        renamed.setdefault("cls.predictions.bias", bias)
    return renamed


def _tied_groups(model: nn.Module) -> list[set[str]]:
    """State-dict keys that name one and the same tensor (the MLM decoder and the word embeddings)."""
    by_tensor: dict[int, set[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        by_tensor.setdefault(id(tensor), set()).add(key)
    return [keys for keys in by_tensor.values() if len(keys) > 1]


def load_state_dict_into(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: Union[str, os.PathLike]
) -> dict[str, list[str]]:
    """Copy matching tensors into `model`; warn with the names of missing and unexpected keys.

    A tensor whose shape differs from the model's is an InputError naming it and both shapes: it means
    the config does not describe the checkpoint.
    """
    expected = model.state_dict()
    weights = normalize_state_dict(state_dict, set(expected))
    for key, value in weights.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise InputError(
                f"tensor '{key}' has shape {tuple(value.shape)} in the checkpoint but {tuple(expected[key].shape)} "
                "in the model built from its config",
                source,
            )
    present = {key: value for key, value in weights.items() if key in expected}
    model.load_state_dict(present, strict=False)
    missing = [key for key in expected if key not in present]
    for group in _tied_groups(model):
        if group & present.keys():
            missing = [key for key in missing if key not in group]
    unexpected = [key for key in weights if key not in expected]
    name = type(model).__name__
    if missing:
        logger.warning("Weights of %s not initialized from %s: %s", name, source, missing)
    if unexpected:
        logger.warning("Weights from %s not used in %s: %s", source, name, unexpected)
    return {"missing_keys": missing, "unexpected_keys": unexpected}


def export_config(config: Mapping[str, Any], class_name: str) -> dict[str, Any]:
    """The config as written to disk, with what Hugging Face AutoModel needs to pick the architecture.

    NEZHA (relative positions) is marked `nezha`, which transformers 4.x loads as NezhaModel; anything
    else `bert`. The original's checkpoints lacked model_type, so AutoModel refused them.
    """
    exported = dict(config)
    exported["model_type"] = "nezha" if exported.get("use_relative_position") else "bert"
    exported["architectures"] = [class_name]
    return exported


def write_model_directory(
    directory: Union[str, os.PathLike],
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    tokenizer_or_vocab: Any = None,
) -> None:
    """pytorch_model.bin, config.json and (when given) vocab.txt, each written to a temp file and renamed.

    A NEZHA encoder is saved under Hugging Face's prefix `nezha.` (their NEZHA classes look for it);
    the loader here reads either prefix.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if config.get("model_type") == "nezha":
        state_dict = {"nezha." + k[len(ENCODER_PREFIX):] if k.startswith(ENCODER_PREFIX) else k: v for k, v in state_dict.items()}
    with atomic_open(directory / WEIGHTS_NAME, "wb") as handle:
        torch.save(dict(state_dict), handle)
    write_json(directory / CONFIG_NAME, dict(sorted(config.items())))
    if tokenizer_or_vocab is not None:
        write_vocab(directory, tokenizer_or_vocab)


def write_vocab(directory: Union[str, os.PathLike], tokenizer_or_vocab: Any) -> None:
    """directory/vocab.txt from a tokenizer (its `vocab` mapping token -> id, or its save_vocabulary) or a file."""
    target = Path(directory) / VOCAB_NAME
    if isinstance(tokenizer_or_vocab, (str, os.PathLike)):
        source = Path(tokenizer_or_vocab)
        if source.is_dir():
            source = source / VOCAB_NAME
        if not source.is_file():
            raise InputError("vocabulary file not found", source)
        if target.exists() and os.path.samefile(source, target):
            return
        with open(source, "rb") as reader, atomic_open(target, "wb") as writer:
            shutil.copyfileobj(reader, writer)
    elif isinstance(getattr(tokenizer_or_vocab, "vocab", None), Mapping):
        tokens = sorted(tokenizer_or_vocab.vocab.items(), key=lambda item: item[1])
        with atomic_open(target) as writer:
            writer.writelines(token + "\n" for token, _ in tokens)
    elif hasattr(tokenizer_or_vocab, "save_vocabulary"):
        tokenizer_or_vocab.save_vocabulary(os.fspath(directory))
    else:
        raise TypeError(f"expected a tokenizer or a vocab.txt path, got {type(tokenizer_or_vocab).__name__}")
