"""Checkpoints under the original TF1 variable names: the released NEZHA, Google BERT, and our own.

Reading is a name lookup with `tf.train.load_checkpoint`: training state (optimizer slots such as
`<var>/adam_m|lamb_v`, `global_step`, loss-scaling state: utils/training_state.py names them) is skipped
unless the caller asks for it by name (resuming a pre-training run does). Missing and unexpected names are
reported, a shape mismatch stops the load before anything is assigned.

Writing produces the TF V2 format (`PREFIX.index`, `PREFIX.data-00000-of-00001`) with the exact names given,
plus the `checkpoint` state file, so TF1 code (a tf.compat.v1 Saver restoring by name, Hugging Face's
`load_tf_weights_in_nezha`, `tf.train.latest_checkpoint`) reads it. A save is crash-safe: the files are
written in a temporary folder beside the target and renamed into place, index last, and the state file is
replaced atomically only after that, so a kill -9 at any moment leaves the newest complete checkpoint
usable (local filesystems).
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from typing import Iterable, Mapping, NamedTuple, Optional, Union

import tensorflow as tf
from absl import logging
from google.protobuf import text_format

from utils.errors import InputError
from utils.fileio import atomic_open
from utils.training_state import is_training_state

PathLike = Union[str, os.PathLike]
Tensors = Mapping[str, Union[tf.Variable, tf.Tensor]]

_TEMP_PREFIX = ".tmp-ckpt-"
STATE_FILE = "checkpoint"


def tf1_name(variable: tf.Variable) -> str:
    """The TF1 name of a variable (its name without the `:0` suffix; modeling.py names variables so)."""
    return re.sub(r":\d+$", "", variable.name)


def named_variables(*modules: tf.Module) -> dict[str, tf.Variable]:
    """TF1 name -> variable for every variable of `modules` (shared ones, like a tied table, once)."""
    result: dict[str, tf.Variable] = {}
    for module in modules:
        for variable in module.variables:
            name = tf1_name(variable)
            if name in result and result[name] is not variable:
                raise ValueError(f"two different variables are named {name}")
            result[name] = variable
    return result


# ------------------------------------------------------------------------------------------------ finding

def _data_files(prefix: str) -> list[str]:
    return sorted(tf.io.gfile.glob(glob_escape(prefix) + ".data-*-of-*"))


def glob_escape(path: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", path)


def is_complete(prefix: str) -> bool:
    """A checkpoint whose index and every data shard it names are present."""
    if not tf.io.gfile.exists(prefix + ".index"):
        return False
    shards = _data_files(prefix)
    found = re.search(r"\.data-\d+-of-(\d+)$", shards[0]) if shards else None
    return found is not None and len(shards) == int(found.group(1))


def checkpoint_step(prefix: str) -> int:
    """N of `model.ckpt-N` (-1 without a step suffix)."""
    found = re.search(r"-(\d+)$", prefix)
    return int(found.group(1)) if found else -1


def _state_paths(directory: str) -> Optional[list[str]]:
    """The checkpoints the state file lists, oldest first (None without a readable state file)."""
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (tf.errors.OpError, text_format.ParseError) as err:
        logging.warning("%s: unreadable checkpoint state file (%s); looking at the files instead",
                        os.path.join(directory, STATE_FILE), err)
        return None
    if state is None:
        return None
    # get_checkpoint_state has already joined relative paths to `directory`.
    paths = [os.path.normpath(p) for p in state.all_model_checkpoint_paths]
    newest = os.path.normpath(state.model_checkpoint_path) if state.model_checkpoint_path else None
    if newest and newest not in paths:
        paths.append(newest)
    return paths


def all_checkpoints(directory: PathLike) -> list[str]:
    """Complete checkpoint prefixes in `directory`, oldest first: by step, and in state-file order among
    equal steps (a checkpoint renamed into place just before a crash, not yet in the state file, counts)."""
    directory = os.fspath(directory)
    listed = _state_paths(directory) or []
    indexes = tf.io.gfile.glob(os.path.join(glob_escape(directory), "*.index"))
    found = list(dict.fromkeys(listed + sorted(os.path.normpath(p[: -len(".index")]) for p in indexes)))
    order = {prefix: position for position, prefix in enumerate(found)}
    return sorted((p for p in found if is_complete(p)), key=lambda p: (checkpoint_step(p), order[p]))


def latest_checkpoint(directory: PathLike) -> Optional[str]:
    """The newest complete checkpoint of `directory` (incomplete or half-written ones are passed over)."""
    found = all_checkpoints(directory)
    return found[-1] if found else None


def resolve_checkpoint(path: PathLike) -> str:
    """The checkpoint prefix that `path` means: a prefix, a prefix's `.index`/`.data-*` file, or a directory
    (its newest complete checkpoint)."""
    path = os.fspath(path)
    if tf.io.gfile.isdir(path):
        newest = latest_checkpoint(path)
        if newest is None:
            raise InputError("no complete TensorFlow checkpoint in this directory (expected PREFIX.index and "
                             "PREFIX.data-* files)", path)
        return newest
    prefix = re.sub(r"\.(index|data-\d+-of-\d+)$", "", path)
    if not tf.io.gfile.exists(prefix + ".index"):
        raise InputError("TensorFlow checkpoint not found (expected PREFIX.index and PREFIX.data-* files for "
                         "this prefix)", path)
    return prefix


# ------------------------------------------------------------------------------------------------ loading

class LoadReport(NamedTuple):
    prefix: str
    loaded: list            # names assigned
    missing: list           # asked for, absent from the checkpoint (they keep their current values)
    unexpected: list        # in the checkpoint, not asked for, and not training state
    skipped: list           # training state in the checkpoint that was not asked for


def load_checkpoint(path: PathLike, variables: Union[Mapping[str, tf.Variable], tf.Module],
                    log_missing: bool = True) -> LoadReport:
    """Assign every variable of `variables` (TF1 name -> variable, or a module) the checkpoint's tensor of the
    same name, as the original's init_from_checkpoint did, and report what did not match.

    Nothing is assigned if any shape differs (InputError naming the variable and both shapes).
    """
    if isinstance(variables, tf.Module):
        variables = named_variables(variables)
    prefix = resolve_checkpoint(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as err:
        raise InputError(f"cannot read this TensorFlow checkpoint ({type(err).__name__}: "
                         f"{_first_line(err)})", prefix) from None
    present = [name for name in variables if name in shapes]
    for name in present:
        variable = variables[name]
        if list(shapes[name]) != variable.shape.as_list():
            raise InputError(f"variable {name} has shape {list(shapes[name])} in the checkpoint but "
                             f"{variable.shape.as_list()} in the model", prefix)
        if dtypes[name].is_floating != variable.dtype.is_floating:
            raise InputError(f"variable {name} is {dtypes[name].name} in the checkpoint but "
                             f"{variable.dtype.name} in the model", prefix)
    values = {}
    for name in present:
        try:
            values[name] = reader.get_tensor(name)
        except (tf.errors.OpError, ValueError, IndexError) as err:   # IndexError: a truncated data file
            raise InputError(f"cannot read variable {name} ({type(err).__name__}: {_first_line(err)})",
                             prefix) from None
    for name, value in values.items():
        variables[name].assign(tf.cast(value, variables[name].dtype))
    extra = sorted(name for name in shapes if name not in variables)
    report = LoadReport(prefix, sorted(present), sorted(n for n in variables if n not in shapes),
                        [n for n in extra if not is_training_state(n)], [n for n in extra if is_training_state(n)])
    logging.info("%s: loaded %d variables, skipped %d optimizer/step variables", prefix, len(report.loaded),
                 len(report.skipped))
    if report.missing and log_missing:
        logging.warning("%s: %d variables not in the checkpoint keep their initial values: %s", prefix,
                        len(report.missing), ", ".join(report.missing))
    if report.unexpected:
        logging.warning("%s: %d checkpoint variables are not used by the model: %s", prefix,
                        len(report.unexpected), ", ".join(report.unexpected))
    return report


def _first_line(err: Exception) -> str:
    text = getattr(err, "message", None) or str(err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


# ------------------------------------------------------------------------------------------------ saving

def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_prefix_files(prefix: str) -> None:
    """Delete a checkpoint, index first so that it is never seen as complete with partial data."""
    for path in [prefix + ".index"] + _data_files(prefix):
        if os.path.exists(path):
            os.remove(path)


def _remove_stale_temporaries(directory: str) -> None:
    """Temporary folders of saves whose process is gone (killed during a save)."""
    for entry in os.listdir(directory):
        found = re.fullmatch(re.escape(_TEMP_PREFIX) + r"(\d+)-[0-9a-f]+", entry)
        if not found:
            continue
        try:
            os.kill(int(found.group(1)), 0)
            alive = int(found.group(1)) != os.getpid()
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(os.path.join(directory, entry), ignore_errors=True)


def _quote(path: str) -> str:
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _write_state(directory: str, prefixes: Iterable[str]) -> None:
    """The `checkpoint` text proto (paths relative to `directory`, as a TF1 Saver writes them)."""
    names = [os.path.relpath(p, directory) for p in prefixes]
    with atomic_open(os.path.join(directory, STATE_FILE)) as handle:
        handle.write(f"model_checkpoint_path: {_quote(names[-1])}\n")
        for name in names:
            handle.write(f"all_model_checkpoint_paths: {_quote(name)}\n")


def save_checkpoint(directory: PathLike, tensors: Tensors, step: Optional[int] = None,
                    basename: str = "model.ckpt", max_to_keep: int = 5) -> str:
    """Write `tensors` (TF1 name -> variable or tensor) as `directory/basename-step` (or `basename` without a
    step), make it the newest in the state file, keep the newest `max_to_keep` (0 keeps all, as
    keep_checkpoint_max), and return its prefix."""
    directory = os.fspath(directory)
    if not tensors:
        raise ValueError("nothing to save")
    os.makedirs(directory, exist_ok=True)
    _remove_stale_temporaries(directory)
    name = basename if step is None else f"{basename}-{int(step)}"
    prefix = os.path.normpath(os.path.join(directory, name))
    temporary = os.path.join(directory, f"{_TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}")
    os.makedirs(temporary)
    try:
        names = sorted(tensors)
        values = [tf.convert_to_tensor(tensors[n].read_value() if isinstance(tensors[n], tf.Variable)
                                       else tensors[n]) for n in names]
        temporary_prefix = os.path.join(temporary, name)
        tf.raw_ops.SaveV2(prefix=temporary_prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=values)
        written = _data_files(temporary_prefix)
        for path in written + [temporary_prefix + ".index"]:
            _fsync(path)
        _remove_prefix_files(prefix)
        for path in written:
            os.replace(path, prefix + path[len(temporary_prefix):])
        os.replace(temporary_prefix + ".index", prefix + ".index")
        _fsync(directory)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    kept = [p for p in (_state_paths(directory) or []) if p != prefix and is_complete(p)] + [prefix]
    pruned = kept[:-max_to_keep] if max_to_keep and max_to_keep > 0 else []
    kept = kept[len(pruned):]
    _write_state(directory, kept)
    for old in pruned:
        _remove_prefix_files(old)
    logging.info("saved %d tensors to %s", len(names), prefix)
    return prefix
