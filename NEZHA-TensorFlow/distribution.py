"""The one place that knows how NEZHA runs on several processes: Horovod (the original's engine),
tf.distribute.MultiWorkerMirroredStrategy (the maintained alternative) or a single process.

Every engine keeps plain per-process variables and one training loop: each rank computes gradients on its
own shard of the data, `all_reduce` averages them, and every rank applies the same update to the same
weights (identical after `broadcast_variables` at the start), exactly the Horovod model. MultiWorkerMirrored
is used for its collectives only (`replica_context.all_reduce` inside `strategy.run`), not for mirrored
variables, so that the model, the optimiser (optimization.TrainStep) and checkpointing are the same code
for all three engines.

Create the engine first thing in a program (every entry does, through `create_engine`): MultiWorkerMirrored-
Strategy must be set up before TensorFlow starts its runtime, and every engine makes one GPU visible to its
process, with memory growth (the original's `visible_device_list = local_rank`, `allow_growth`): one process
per GPU, its local rank from Horovod, or from the launcher or TF_CONFIG's hosts under MultiWorker
(utils/launcher.py). MultiWorker all-reduces with NCCL on GPUs and ring on CPUs. A process that runs alone
while its launcher started several stops with a message saying how to launch.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import tensorflow as tf
from absl import flags, logging

from utils import launcher
from utils.errors import InputError

ENGINES = ("none", "multi_worker", "horovod")
# What a process that runs alone while its launcher started several is told, per engine.
LAUNCH_HINTS = {
    "none": "NEZHA pretraining runs data-parallel with --horovod (horovodrun -np N -H host1:n,host2:n --gloo "
            "python run_pretraining.py --horovod ...) or --distribution=multi_worker (TF_CONFIG naming every "
            "process); fine-tuning and feature extraction run as one process: start one",
    "multi_worker": "give every process a TF_CONFIG that lists all the processes' addresses (cluster.worker) and "
                    "its own task index",
    "horovod": "this Horovod is built without MPI (gloo only), so mpirun and srun start copies it cannot connect: "
               "launch with horovodrun -np N -H host1:n,host2:n --gloo ..., or rebuild it with MPI (install "
               "libopenmpi-dev, then make horovod)",
    "horovod_mpi": "Horovod's MPI did not connect the processes: launch with mpirun -np N or horovodrun (under "
                   "Slurm: srun --mpi=pmix)",
}


class Engine:
    """A single process: rank 0 of 1; all-reduce and broadcast are identities."""

    name = "none"

    def __init__(self) -> None:
        self.rank = 0
        self.size = 1
        self.local_rank = 0
        self.local_size = 1
        self.gpu: Optional[str] = None

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

    def launch_hint(self) -> str:
        """How to launch several processes for this engine."""
        return LAUNCH_HINTS[self.name]

    def describe(self) -> str:
        return (f"engine {self.name}: rank {self.rank} of {self.size} (local rank {self.local_rank} of "
                f"{self.local_size}) on {self.gpu or 'CPU'}")


def use_one_gpu(local_rank: int = 0, local_size: int = 1, size: int = 1) -> Optional[str]:
    """Make the GPU this process trains on (utils.launcher.choose_gpu) its only visible one, with memory growth,
    so that no process maps memory on another's GPU. Returns its name; None where TensorFlow sees no GPU."""
    gpus = tf.config.list_physical_devices("GPU")
    index = launcher.choose_gpu(len(gpus), local_rank, local_size, size)
    if index is None:
        return None
    if size == 1 and len(gpus) > 1:
        logging.info("%d GPUs visible: this single process uses the first; start one process per GPU to use "
                     "them all (README: Distributed training)", len(gpus))
    try:
        tf.config.set_visible_devices(gpus[index], "GPU")
        tf.config.experimental.set_memory_growth(gpus[index], True)
    except RuntimeError as err:  # TensorFlow's runtime already started in this process (a library caller)
        logging.warning("GPUs left as they are (%s): create the engine before TensorFlow runs anything", err)
    return gpus[index].name


def require_bfloat16() -> None:
    """Stop unless this process's GPU computes in bfloat16: compute capability 8.0 (Ampere) or later. CPUs run
    bfloat16 (slowly where they lack bf16 units)."""
    for gpu in tf.config.get_visible_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capability = tuple(details.get("compute_capability") or ())
        if capability and capability < (8, 0):
            raise InputError(f"--use_bf16 needs a GPU of compute capability 8.0 (Ampere) or later; "
                             f"{details.get('device_name', gpu.name)} has {capability[0]}.{capability[1]}: use "
                             "--use_fp16 (float16 with loss scaling) instead")


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
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()
        self.gpu = use_one_gpu(self.local_rank, self.local_size, self.size)
        self._all_reduce = tf.function(self._grouped_mean)

    def launch_hint(self) -> str:
        return LAUNCH_HINTS["horovod_mpi" if self.hvd.mpi_built() else "horovod"]

    def _grouped_mean(self, tensors: list[tf.Tensor]) -> list[tf.Tensor]:
        return self.hvd.grouped_allreduce(tensors, op=self.hvd.Average)

    def all_reduce(self, tensors: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        if self.size == 1:
            return list(tensors)
        return list(self._all_reduce(list(tensors)))

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        self.hvd.broadcast_variables(list(variables), root_rank=0)


def multi_worker_layout(environ: Optional[Mapping[str, str]] = None) -> launcher.Launch:
    """A MultiWorker task's rank and the number of tasks, from TF_CONFIG (the chief first, then the workers);
    its local rank and the number of processes on its host from the launcher that started it where there is
    one (LOCAL_RANK, SLURM_LOCALID, OMPI_COMM_WORLD_LOCAL_RANK, ...), else from TF_CONFIG's tasks on its host."""
    cluster = launcher.tf_config_launch(environ) or launcher.NO_LAUNCHER
    process = launcher.process_launch(environ) or launcher.NO_LAUNCHER
    local_rank = cluster.local_rank if process.local_rank is None else process.local_rank
    local_size = cluster.local_size if process.local_size is None else process.local_size
    return dataclasses.replace(cluster, local_rank=local_rank or 0, local_size=local_size or 1)


def communication_options(gpu: bool) -> tf.distribute.experimental.CommunicationOptions:
    """NCCL all-reduces between GPUs, ring (gRPC) between CPUs."""
    implementation = tf.distribute.experimental.CommunicationImplementation
    return tf.distribute.experimental.CommunicationOptions(
        implementation=implementation.NCCL if gpu else implementation.RING)


class MultiWorkerEngine(Engine):
    """tf.distribute.MultiWorkerMirroredStrategy configured by TF_CONFIG, one process (one device) per task."""

    name = "multi_worker"

    def __init__(self) -> None:
        super().__init__()
        layout = multi_worker_layout()
        self.rank, self.local_rank, self.local_size = layout.rank, layout.local_rank, layout.local_size
        self.gpu = use_one_gpu(self.local_rank, self.local_size, layout.world_size)
        options = communication_options(self.gpu is not None)
        self.communication = options.implementation.name
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        self.size = self.strategy.num_replicas_in_sync
        if self.size != layout.world_size:
            raise InputError(f"MultiWorkerMirroredStrategy found {self.size} replicas for {layout.world_size} "
                             "tasks in TF_CONFIG: run one process per device", "TF_CONFIG")
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


def create_engine(distribution: str = "none", horovod: bool = False) -> Engine:
    """The engine that `--distribution` (new) and `--horovod` (the original's flag) select, on this process's
    GPU; every TF entry calls it first (those without the flags for the single process)."""
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
        engine.gpu = use_one_gpu()
    launcher.check_world_size(engine.size, engine.launch_hint())
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
