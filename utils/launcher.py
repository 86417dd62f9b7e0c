"""What the launcher that started this process says about it, for both trees: how many processes it started,
this one's rank, its local rank and the number of processes on its host; which GPU it trains on; and a stop
for a process that runs alone while its launcher started several (each would train its own copy of the model
and write the same output directory).

Launchers set these variables (the innermost launcher, which started this very process, is read first:
torchrun or mpirun inside a Slurm job sees both its own and Slurm's):

    torchrun             WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE
    horovodrun (gloo)    HOROVOD_SIZE, HOROVOD_RANK, HOROVOD_LOCAL_RANK, HOROVOD_LOCAL_SIZE
    Open MPI's mpirun    OMPI_COMM_WORLD_SIZE, _RANK, _LOCAL_RANK, _LOCAL_SIZE (also horovodrun with MPI)
    PMI (MPICH, Intel)   PMI_SIZE, PMI_RANK, MPI_LOCALRANKID, MPI_LOCALNRANKS
    Slurm (srun, sbatch) SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID

TF_CONFIG (tf.distribute's cluster description: chief and worker addresses, this task) comes last: it is
written by a launcher script rather than set by one, and its local ranks follow from the hosts it names.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, NamedTuple, Optional

from utils.errors import InputError


class _Variables(NamedTuple):
    name: str
    size: str
    rank: str
    local_rank: str
    local_size: Optional[str]


LAUNCHERS = (
    _Variables("torchrun", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
    _Variables("horovodrun", "HOROVOD_SIZE", "HOROVOD_RANK", "HOROVOD_LOCAL_RANK", "HOROVOD_LOCAL_SIZE"),
    _Variables("mpirun (Open MPI)", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
               "OMPI_COMM_WORLD_LOCAL_SIZE"),
    _Variables("PMI (MPICH, Intel MPI)", "PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    _Variables("Slurm", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", None),
)
# Every variable read here (tests clear them to run as a lone process whatever launched pytest).
VARIABLES = tuple(v for spec in LAUNCHERS for v in spec[1:] if v) + ("TF_CONFIG",)

LAUNCH_ONE_PER_GPU = ("start one process per GPU (horovodrun -np TOTAL -H host1:GPUS,host2:GPUS; "
                      "srun --ntasks-per-node=GPUS --gpus-per-task=1; torchrun --nproc_per_node=GPUS)")


@dataclasses.dataclass(frozen=True)
class Launch:
    """This process as its launcher describes it; `local_rank`/`local_size` are None where it does not say."""

    launcher: str
    world_size: int = 1
    rank: int = 0
    local_rank: Optional[int] = None
    local_size: Optional[int] = None
    source: str = ""


NO_LAUNCHER = Launch("none")


class Task(NamedTuple):
    """A chief or worker task of TF_CONFIG."""

    kind: str
    index: int
    address: str

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]


def _environ(environ: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _integer(environ: Mapping[str, str], name: Optional[str]) -> Optional[int]:
    if name is None or name not in environ:
        return None
    try:
        return int(environ[name])
    except ValueError:
        raise InputError(f"expected an integer, got {environ[name]!r}", name) from None


def process_launch(environ: Optional[Mapping[str, str]] = None) -> Optional[Launch]:
    """What the innermost process launcher (torchrun, horovodrun, mpirun, PMI, Slurm) says; None without one."""
    environ = _environ(environ)
    for spec in LAUNCHERS:
        size = _integer(environ, spec.size)
        if size is not None:
            rank = _integer(environ, spec.rank)
            return Launch(spec.name, size, 0 if rank is None else rank, _integer(environ, spec.local_rank),
                          _integer(environ, spec.local_size), f"{spec.size}={size}")
    return None


def tf_config_tasks(environ: Optional[Mapping[str, str]] = None) -> tuple[list[Task], Optional[Task]]:
    """Every chief and worker task of TF_CONFIG in rank order (the chief first), and this process's task;
    ([], None) without TF_CONFIG."""
    raw = _environ(environ).get("TF_CONFIG")
    if not raw:
        return [], None
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        tasks = [Task(kind, i, address) for kind in ("chief", "worker")
                 for i, address in enumerate(cluster.get(kind, []))]
        me = next(t for t in tasks if t.kind == task["type"] and t.index == int(task["index"]))
    except (ValueError, KeyError, TypeError, AttributeError, StopIteration) as err:
        raise InputError(f"expected JSON with cluster.worker (and optionally cluster.chief) addresses and a task "
                         f"{{type, index}} naming one of them ({type(err).__name__}: {err})", "TF_CONFIG") from None
    return tasks, me


def tf_config_launch(environ: Optional[Mapping[str, str]] = None) -> Optional[Launch]:
    """TF_CONFIG read as a launch: its rank order, and local ranks among the tasks that share this task's host."""
    tasks, me = tf_config_tasks(environ)
    if me is None:
        return None
    same_host = [task for task in tasks if task.host == me.host]
    return Launch("TF_CONFIG", len(tasks), tasks.index(me), same_host.index(me), len(same_host),
                  f"TF_CONFIG lists {len(tasks)} tasks")


def detect(environ: Optional[Mapping[str, str]] = None) -> Launch:
    """The innermost launcher's view of this process, else TF_CONFIG's, else a lone process."""
    return process_launch(environ) or tf_config_launch(environ) or NO_LAUNCHER


def choose_gpu(visible: int, local_rank: int = 0, local_size: int = 1, world_size: int = 1) -> Optional[int]:
    """The index, among the `visible` GPUs, of the one this process trains on (None when there is none): one
    process per GPU.

    One visible GPU is used whatever the local rank: launchers such as Slurm's --gpus-per-task=1 already chose
    it. A lone process takes GPU 0. Several processes take GPU local_rank; a process that is its host's only one
    among several ranks while it sees several GPUs is refused, as it would leave all but one idle.
    """
    if visible == 0:
        return None
    if visible == 1 or world_size == 1:
        return 0
    if local_size == 1:
        raise InputError(f"this process sees {visible} GPUs but is the only one of the {world_size} ranks on its "
                         f"host, so it would train on one and leave the others idle: {LAUNCH_ONE_PER_GPU}; or make "
                         "one GPU visible to each (CUDA_VISIBLE_DEVICES=0) to use one per host")
    if not 0 <= local_rank < visible:
        raise InputError(f"local rank {local_rank} has no GPU: this host shows {visible} GPUs to each of its "
                         f"{local_size} processes; start at most one process per GPU")
    return local_rank


def check_world_size(world_size: int, how_to_launch: str, environ: Optional[Mapping[str, str]] = None) -> None:
    """Stop (InputError: `error: ...`, exit status 2 in the entry points) when the launcher started a number of
    processes other than the `world_size` this process runs with, saying how to launch instead."""
    launch = detect(environ)
    if launch.world_size <= 1 or launch.world_size == world_size:
        return
    started = f"{launch.launcher} ({launch.source}) says this is one of {launch.world_size} processes"
    if world_size == 1:
        raise InputError(f"{started}, but it runs alone, so each would train its own copy and write the same "
                         f"output directory: {how_to_launch}")
    raise InputError(f"{started}, but the engine joined {world_size}: {how_to_launch}")
