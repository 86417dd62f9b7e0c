"""TensorBoard scalars for the trainers of both trees, written and read without TensorFlow or PyTorch.

Layout, TensorBoard's: one directory per run under output_dir (`train/`, `eval/`; run_pretraining keeps the
Estimator's train run in output_dir itself), each holding `events.out.tfevents.<time>.<host>.<pid>.<n>` files
of `Event` records; `tensorboard --logdir output_dir` shows them. A scalar is the float32 tensor with the
`scalars` plugin marker, the record `tf.summary.scalar` writes, so TensorBoard reads these files and
TensorFlow's alike.

Records go through tensorboard's own RecordWriter into a plain file, flushed at every write (a crash keeps
every complete record; TensorBoard skips a truncated last one). tensorboard's EventFileWriter, on which
torch.utils.tensorboard builds, is not used: it opens files through `tensorboard.compat.tf`, which imports
TensorFlow whenever it is installed (seconds and hundreds of MB in a PyTorch process), and it flushes from a
background thread every two minutes.

Only rank 0 writes: `open_writer(..., enabled=False)` gives a writer that takes every call, writes nothing and
imports nothing. Without the tensorboard package, open_writer logs one warning and gives the same idle writer:
summaries are for watching a run, and a run must not stop for want of them.
"""
from __future__ import annotations

import itertools
import logging
import os
import socket
import time
from typing import Any, Mapping, Optional

from utils.errors import InputError

TRAIN_RUN = "train"
EVAL_RUN = "eval"
EVENTS_PREFIX = "events.out.tfevents"
INSTALL_HINT = "pip install tensorboard==2.21.0"

logger = logging.getLogger(__name__)
_file_numbers = itertools.count()
_warned_missing = False


class ScalarWriter:
    """The writer's interface, and what ranks other than 0 get: every call is accepted, nothing is written."""

    logdir: Optional[str] = None

    def write(self, step: int, values: Mapping[str, Any]) -> None:
        """Record every value (a float, or anything float() takes: NumPy, TensorFlow or torch scalars) at
        `step` under its tag."""

    def close(self) -> None:
        """Close the event file; later writes are an error. Closing twice is harmless."""

    def __enter__(self) -> "ScalarWriter":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class TensorBoardWriter(ScalarWriter):
    """Scalars of one run, appended to one new event file in logdir (created at the first write, so a run
    that records nothing leaves no empty file)."""

    def __init__(self, logdir: os.PathLike | str):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.scalar.summary_v2 import scalar_pb
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2, self._summary_pb2, self._scalar_pb = event_pb2, summary_pb2, scalar_pb
        self._record_writer = RecordWriter
        self.logdir = os.fspath(logdir)
        self.path: Optional[str] = None
        self._records: Any = None
        self._closed = False

    def write(self, step: int, values: Mapping[str, Any]) -> None:
        if self._closed:
            raise ValueError(f"the summary writer of {self.logdir} is closed")
        if not values:
            return
        summary = self._summary_pb2.Summary()
        for tag, value in values.items():
            summary.value.extend(self._scalar_pb(tag, float(value)).value)
        self._append(self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def close(self) -> None:
        self._closed = True
        if self._records is not None:
            self._records.close()
            self._records = None

    def _append(self, event: Any) -> None:
        if self._records is None:
            self._records = self._open()
        self._records.write(event.SerializeToString())
        self._records.flush()

    def _open(self) -> Any:
        os.makedirs(self.logdir, exist_ok=True)
        now = time.time()
        # TensorBoard reads a run's files in name order: the number is padded so that two files of one
        # process within one second sort in the order they were opened.
        name = f"{EVENTS_PREFIX}.{int(now):010d}.{socket.gethostname()}.{os.getpid()}.{next(_file_numbers):06d}"
        self.path = os.path.join(self.logdir, name)
        records = self._record_writer(open(self.path, "xb"))
        version = self._event_pb2.Event(wall_time=now, file_version="brain.Event:2")
        records.write(version.SerializeToString())
        return records


def open_writer(logdir: os.PathLike | str, *, enabled: bool = True) -> ScalarWriter:
    """A writer of TensorBoard scalars into logdir (one run), or an idle one when `enabled` is False (pass
    False on every rank but 0) or the tensorboard package is missing (one warning per process)."""
    if not enabled:
        return ScalarWriter()
    try:
        return TensorBoardWriter(logdir)
    except ImportError as err:
        global _warned_missing
        if not _warned_missing:
            _warned_missing = True
            logger.warning("no TensorBoard summaries are written (the tensorboard package is missing: %s; "
                           "%s)", err, INSTALL_HINT)
        return ScalarWriter()


def event_files(logdir: os.PathLike | str) -> list[str]:
    """The event files of one run directory, oldest first."""
    logdir = os.fspath(logdir)
    if not os.path.isdir(logdir):
        return []
    return sorted(os.path.join(logdir, name) for name in os.listdir(logdir) if name.startswith(EVENTS_PREFIX))


def read_scalars(logdir: os.PathLike | str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of one run directory as (step, value) pairs by tag, read by TensorBoard's own event
    reader, so they are what TensorBoard shows (a restarted run's superseded steps are dropped as it drops
    them). TensorBoard's file layer imports TensorFlow when it is installed."""
    logdir = os.fspath(logdir)
    if not event_files(logdir):
        raise InputError(f"no TensorBoard event files here (expected {EVENTS_PREFIX}.*)", logdir)
    try:
        from tensorboard.backend.event_processing import plugin_event_accumulator as accumulator
        from tensorboard.util import tensor_util
    except ImportError as err:
        raise InputError(f"reading TensorBoard summaries needs the tensorboard package ({err}; "
                         f"{INSTALL_HINT})", logdir) from None
    events = accumulator.EventAccumulator(logdir, size_guidance={accumulator.TENSORS: 0})
    events.Reload()
    scalars: dict[str, list[tuple[int, float]]] = {}
    for tag in events.Tags()[accumulator.TENSORS]:
        if events.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        scalars[tag] = [(event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
                        for event in events.Tensors(tag)]
    return scalars
