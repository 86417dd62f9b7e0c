"""The one place that knows how NEZHA runs on several processes: Horovod (the original's engine),
tf.distribute.MultiWorkerMirroredStrategy (the maintained alternative) or a single process.

Every engine keeps plain per-process variables and one training loop: each rank computes gradients on its
own shard of the data, `all_reduce` averages them, and every rank applies the same update to the same
weights (identical after `broadcast_variables` at the start), exactly the Horovod model. MultiWorkerMirrored
is used for its collectives only (`replica_context.all_reduce` inside `strategy.run`), not for mirrored
variables, so that the model, the optimiser (optimization.TrainStep) and checkpointing are the same code
for all three engines.

Create the engine first thing in a program: MultiWorkerMirroredStrategy must be set up before TensorFlow
starts its runtime, and both multi-process engines pin one GPU per process (the original's
`visible_device_list = local_rank`, `allow_growth`).
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import tensorflow as tf
from absl import flags, logging

from utils.errors import InputError

ENGINES = ("none", "multi_worker", "horovod")


class Engine:
    """A single process: rank 0 of 1; all-reduce and broadcast are identities."""

    name = "none"

    def __init__(self) -> None:
        self.rank = 0
        self.size = 1
        self.local_rank = 0

    @property
    def is_chief(self) -> bool:
        """Rank 0 restores init_checkpoint, writes checkpoints and logs, and evaluates (as the original)."""
        return self.rank == 0

    def shard_files(self, files: Sequence[str]) -> list[str]:
        """This rank's input files: those at positions rank, rank + size, ... of `files`, the elements that the
        original's `Dataset.from_tensor_slices(files).shard(size, rank)` keeps."""
        files = list(files)
        if self.size > 1 and len(files) < self.size:
            raise InputError(f"Input Files must be sharded: {len(files)} input file(s) for {self.size} ranks "
                             "(give at least one file per rank)")
        return files[self.rank::self.size]

    def scale_learning_rate(self, learning_rate: float) -> float:
        """The original's `learning_rate * hvd.size()`: the per-rank batch is fixed, so the global batch and,
        by this linear rule, the learning rate grow with the number of ranks."""
        if self.size > 1:
            logging.info("learning rate %g x %d ranks = %g (as the original did under Horovod)",
                         learning_rate, self.size, learning_rate * self.size)
        return learning_rate * self.size

    def all_reduce(self, tensors: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """The mean of each tensor over all ranks."""
        return list(tensors)

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        """Give every rank rank 0's values (call after rank 0 restored a checkpoint)."""

    def describe(self) -> str:
        return f"engine {self.name}: rank {self.rank} of {self.size} (local rank {self.local_rank})"


def _use_one_gpu(local_rank: int) -> None:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    if local_rank >= len(gpus):
        raise InputError(f"local rank {local_rank} has no GPU: this host has {len(gpus)}; start at most one "
                         "process per GPU")
    tf.config.set_visible_devices(gpus[local_rank], "GPU")
    tf.config.experimental.set_memory_growth(gpus[local_rank], True)


class HorovodEngine(Engine):
    """Horovod, launched by `horovodrun -np N -H host:slots ...` or `mpirun` (the original's setup)."""

    name = "horovod"

    def __init__(self) -> None:
        super().__init__()
        try:
            import horovod.tensorflow as hvd
        except ImportError as err:
            raise InputError(f"--horovod needs Horovod ({err}); build it with `make horovod` "
                             "(scripts/install_horovod.sh)") from None
        self.hvd = hvd
        hvd.init()
        self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()
        _use_one_gpu(self.local_rank)
        self._all_reduce = tf.function(self._grouped_mean)

    def _grouped_mean(self, tensors: list[tf.Tensor]) -> list[tf.Tensor]:
        return self.hvd.grouped_allreduce(tensors, op=self.hvd.Average)

    def all_reduce(self, tensors: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        if self.size == 1:
            return list(tensors)
        return list(self._all_reduce(list(tensors)))

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        self.hvd.broadcast_variables(list(variables), root_rank=0)


class MultiWorkerEngine(Engine):
    """tf.distribute.MultiWorkerMirroredStrategy configured by TF_CONFIG, one process (one device) per task.

    Ranks follow TF_CONFIG's cluster: the chief (if any) first, then the workers in order; the local rank is
    the task's position among the tasks on the same host.
    """

    name = "multi_worker"

    def __init__(self) -> None:
        super().__init__()
        tasks, me = _tf_config_tasks()
        if me is not None:
            self.rank = tasks.index(me)
            host = me[2].rsplit(":", 1)[0]
            self.local_rank = sum(1 for task in tasks[:self.rank] if task[2].rsplit(":", 1)[0] == host)
        _use_one_gpu(self.local_rank)
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy()
        self.size = self.strategy.num_replicas_in_sync
        if self.size != max(len(tasks), 1):
            raise InputError(f"MultiWorkerMirroredStrategy found {self.size} replicas for {len(tasks)} tasks in "
                             "TF_CONFIG: run one process per device", "TF_CONFIG")
        self._sum = tf.function(lambda tensors: self._collective(tf.distribute.ReduceOp.SUM, tensors))
        self._mean = tf.function(lambda tensors: self._collective(tf.distribute.ReduceOp.MEAN, tensors))

    def _collective(self, op: tf.distribute.ReduceOp, tensors: list[tf.Tensor]) -> list[tf.Tensor]:
        def reduce(values: list[tf.Tensor]) -> list[tf.Tensor]:
            # Copies made inside the replica function carry the replica's device, which the collective needs.
            values = [tf.identity(v) for v in values]
            return tf.distribute.get_replica_context().all_reduce(op, values)

        results = self.strategy.run(reduce, args=(tensors,))
        return [self.strategy.experimental_local_results(r)[0] for r in results]

    def all_reduce(self, tensors: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        if self.size == 1:
            return list(tensors)
        return list(self._mean(list(tensors)))

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        """Rank 0's values reach every rank as a sum in which the other ranks contribute zeros."""
        if self.size == 1:
            return
        variables = list(variables)
        mine = [v.read_value() if self.is_chief else tf.zeros_like(v) for v in variables]
        for variable, value in zip(variables, self._sum(mine)):
            variable.assign(value)


def _tf_config_tasks() -> tuple[list[tuple[str, int, str]], tuple[str, int, str] | None]:
    """(type, index, address) of every chief and worker task in TF_CONFIG, in rank order, and this task."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return [], None
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        tasks = [(kind, i, address) for kind in ("chief", "worker") for i, address in enumerate(cluster.get(kind, []))]
        me = next(t for t in tasks if t[0] == task["type"] and t[1] == int(task["index"]))
    except (ValueError, KeyError, TypeError, StopIteration) as err:
        raise InputError(f"expected JSON with cluster.worker (and optionally cluster.chief) addresses and a task "
                         f"{{type, index}} naming one of them ({type(err).__name__}: {err})", "TF_CONFIG") from None
    return tasks, me


def create_engine(distribution: str = "none", horovod: bool = False) -> Engine:
    """The engine that `--distribution` (new) and `--horovod` (the original's flag) select."""
    if distribution not in ENGINES:
        raise InputError(f"--distribution must be one of {', '.join(ENGINES)}, got {distribution!r}")
    if horovod and distribution == "multi_worker":
        raise InputError("--horovod contradicts --distribution=multi_worker: choose one engine")
    if horovod or distribution == "horovod":
        engine: Engine = HorovodEngine()
    elif distribution == "multi_worker":
        engine = MultiWorkerEngine()
    else:
        engine = Engine()
    logging.info(engine.describe())
    return engine


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """--horovod (the original's) and --distribution; read them with create_engine(FLAGS.distribution,
    FLAGS.horovod)."""
    flags.DEFINE_bool("horovod", False, "Whether to use Horovod for multi-gpu runs", flag_values=flag_values)
    flags.DEFINE_enum("distribution", "none", list(ENGINES),
                      "Data-parallel engine: none (one process), multi_worker (tf.distribute."
                      "MultiWorkerMirroredStrategy, configured by TF_CONFIG) or horovod (same as --horovod; "
                      "launch with horovodrun or mpirun).", flag_values=flag_values)
