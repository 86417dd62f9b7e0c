"""utils/launcher.py: each launcher's environment read as it sets it, the GPU each process of a layout takes,
and the stop for a process that runs alone while its launcher started several."""
from __future__ import annotations

import json

import pytest

from utils import launcher
from utils.errors import InputError


def _tf_config(workers: list[str], index: int, chief: list[str] | None = None, kind: str = "worker") -> str:
    cluster = {"worker": workers, **({"chief": chief} if chief else {})}
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


@pytest.mark.parametrize("environ,expected", [
    ({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"},
     ("torchrun", 8, 5, 1, 4, "WORLD_SIZE=8")),
    ({"HOROVOD_SIZE": "4", "HOROVOD_RANK": "3", "HOROVOD_LOCAL_RANK": "1", "HOROVOD_LOCAL_SIZE": "2"},
     ("horovodrun", 4, 3, 1, 2, "HOROVOD_SIZE=4")),
    ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
      "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, ("mpirun (Open MPI)", 2, 1, 1, 2, "OMPI_COMM_WORLD_SIZE=2")),
    ({"PMI_SIZE": "6", "PMI_RANK": "4", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "3"},
     ("PMI (MPICH, Intel MPI)", 6, 4, 0, 3, "PMI_SIZE=6")),
    ({"SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1"}, ("Slurm", 16, 9, 1, None, "SLURM_NTASKS=16")),
    ({"SLURM_NTASKS": "4"}, ("Slurm", 4, 0, None, None, "SLURM_NTASKS=4")),   # sbatch's own shell
    ({}, ("none", 1, 0, None, None, "")),
])
def test_each_launchers_variables(environ, expected):
    launch = launcher.detect(environ)
    assert (launch.launcher, launch.world_size, launch.rank, launch.local_rank, launch.local_size,
            launch.source) == expected


def test_the_innermost_launcher_wins():
    # torchrun (2 nodes x 4) started by srun, one task per node: torchrun's view is this process's.
    environ = {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0",
               "WORLD_SIZE": "8", "RANK": "6", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "4"}
    assert launcher.detect(environ) == launcher.Launch("torchrun", 8, 6, 2, 4, "WORLD_SIZE=8")
    # mpirun -np 2 inside an 8-task allocation
    environ = {"SLURM_NTASKS": "8", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}
    assert launcher.detect(environ).world_size == 2
    # a launcher beats TF_CONFIG
    environ = {"SLURM_NTASKS": "3", "TF_CONFIG": _tf_config(["a:1", "b:1"], 0)}
    assert launcher.detect(environ).launcher == "Slurm"


def test_tf_config_ranks_and_local_ranks_by_host():
    workers = ["node1:2222", "node1:2223", "node2:2222", "node2:2223"]
    layouts = [launcher.detect({"TF_CONFIG": _tf_config(workers, i)}) for i in range(4)]
    assert [(l.world_size, l.rank, l.local_rank, l.local_size) for l in layouts] == [
        (4, 0, 0, 2), (4, 1, 1, 2), (4, 2, 0, 2), (4, 3, 1, 2)]
    chief = launcher.detect({"TF_CONFIG": _tf_config(["node2:1"], 0, chief=["node1:1"], kind="chief")})
    worker = launcher.detect({"TF_CONFIG": _tf_config(["node2:1"], 0, chief=["node1:1"])})
    assert (chief.rank, chief.world_size, chief.local_size) == (0, 2, 1) and worker.rank == 1
    tasks, me = launcher.tf_config_tasks({"TF_CONFIG": _tf_config(workers, 2)})
    assert me == launcher.Task("worker", 2, "node2:2222") and me.host == "node2" and len(tasks) == 4
    assert launcher.tf_config_tasks({}) == ([], None)


@pytest.mark.parametrize("raw", ["{not json", json.dumps({"cluster": {"worker": ["a:1"]}}),
                                 _tf_config(["a:1"], 3), json.dumps({"cluster": [], "task": {}})])
def test_a_malformed_tf_config_names_tf_config(raw):
    with pytest.raises(InputError, match="^TF_CONFIG: expected JSON with cluster.worker"):
        launcher.detect({"TF_CONFIG": raw})


def test_a_non_integer_count_names_the_variable():
    with pytest.raises(InputError, match="^SLURM_NTASKS: expected an integer, got '4\\(x2\\)'"):
        launcher.detect({"SLURM_NTASKS": "4(x2)"})


@pytest.mark.parametrize("visible,local_rank,local_size,world_size,expected", [
    (0, 3, 4, 8, None),          # CPU: no GPU to choose
    (4, 0, 1, 1, 0),             # a lone process on a 4-GPU machine takes GPU 0
    (8, 3, 8, 16, 3),            # one process per GPU, every GPU visible to each: GPU local_rank
    (1, 3, 4, 8, 0),             # the launcher left one GPU visible to each process (Slurm --gpus-per-task=1)
    (1, 1, 2, 2, 0),             # two processes sharing a 1-GPU host
    (2, 1, 4, 4, 1),
])
def test_one_gpu_per_process(visible, local_rank, local_size, world_size, expected):
    assert launcher.choose_gpu(visible, local_rank, local_size, world_size) == expected


def test_gpus_a_layout_cannot_use_are_refused_with_how_to_launch():
    # one process per node on 8-GPU nodes: 7 of 8 GPUs would idle
    with pytest.raises(InputError, match="sees 8 GPUs but is the only one of the 2 ranks on its host.*"
                                         "start one process per GPU.*CUDA_VISIBLE_DEVICES=0"):
        launcher.choose_gpu(8, 0, 1, 2)
    with pytest.raises(InputError, match="local rank 2 has no GPU: this host shows 2 GPUs to each of its 4"):
        launcher.choose_gpu(2, 2, 4, 4)


@pytest.mark.parametrize("environ", [{"OMPI_COMM_WORLD_SIZE": "8"}, {"PMI_SIZE": "2"}, {"SLURM_NTASKS": "4"},
                                     {"WORLD_SIZE": "2", "RANK": "1"},
                                     {"TF_CONFIG": _tf_config(["a:1", "a:2"], 1)}])
def test_a_process_alone_among_several_stops_with_how_to_launch(environ):
    name = next(iter(environ))
    with pytest.raises(InputError, match=f"says this is one of [0-9] processes, but it runs alone, so each "
                                         f"would train its own copy.*: launch it thus") as err:
        launcher.check_world_size(1, "launch it thus", environ)
    assert name in str(err.value)


def test_matching_world_sizes_and_lone_processes_pass():
    launcher.check_world_size(1, "", {})
    launcher.check_world_size(1, "", {"SLURM_NTASKS": "1"})
    launcher.check_world_size(8, "", {"OMPI_COMM_WORLD_SIZE": "8"})
    with pytest.raises(InputError, match=r"mpirun \(Open MPI\) \(OMPI_COMM_WORLD_SIZE=8\) says this is one of 8 "
                                         "processes, but the engine joined 4: hint"):
        launcher.check_world_size(4, "hint", {"OMPI_COMM_WORLD_SIZE": "8"})
