"""distribution.py: rank bookkeeping in-process; the GPU each process of every layout takes and the stop for a
lone copy among several, with the launchers' environment and the device list simulated; and two real local
processes per engine that must end with identical weights, equal to one process trained on the doubled batch."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import distribution
import run_pretraining
from utils import launcher
from utils.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("dist_worker.py")
LAUNCH_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def lone_process(monkeypatch):
    """Whatever launched pytest (a Slurm job, mpirun), each test starts as a lone process."""
    for name in launcher.VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _load_worker():
    spec = importlib.util.spec_from_file_location("nezha_dist_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


class FakeGPUs:
    """`count` GPUs as tf.config lists them; records what distribution.py makes visible and grows."""

    def __init__(self, monkeypatch, count: int, compute_capability: tuple[int, int] = (9, 0)):
        self.devices = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(count)]
        self.visible, self.growth = None, []
        monkeypatch.setattr(tf.config, "list_physical_devices",
                            lambda kind=None: list(self.devices) if kind == "GPU" else [])
        monkeypatch.setattr(tf.config, "get_visible_devices",
                            lambda kind=None: self.devices if self.visible is None else [self.visible])
        monkeypatch.setattr(tf.config, "set_visible_devices", self._set_visible)
        monkeypatch.setattr(tf.config.experimental, "set_memory_growth",
                            lambda device, enable: self.growth.append((device.name, enable)))
        monkeypatch.setattr(tf.config.experimental, "get_device_details",
                            lambda device: {"device_name": "Fake GPU", "compute_capability": compute_capability})

    def _set_visible(self, device, kind):
        assert kind == "GPU"
        self.visible = device

    def chosen(self) -> tuple[str, list]:
        """The GPU made visible, and the memory growth settings made."""
        return self.visible.name, self.growth


def _fake_horovod(monkeypatch, rank: int, size: int, local_rank: int, local_size: int, mpi: bool = False):
    hvd = types.ModuleType("horovod.tensorflow")
    hvd.init = lambda: None
    hvd.rank, hvd.size = (lambda: rank), (lambda: size)
    hvd.local_rank, hvd.local_size = (lambda: local_rank), (lambda: local_size)
    hvd.mpi_built = lambda: mpi
    package = types.ModuleType("horovod")
    package.tensorflow = hvd
    monkeypatch.setitem(sys.modules, "horovod", package)
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", hvd)


def _tf_config(workers: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def test_a_single_process_takes_the_first_gpu_with_memory_growth(monkeypatch):
    gpus = FakeGPUs(monkeypatch, 4)
    engine = distribution.create_engine("none")
    assert gpus.chosen() == ("/physical_device:GPU:0", [("/physical_device:GPU:0", True)])
    assert engine.gpu == "/physical_device:GPU:0" and "on /physical_device:GPU:0" in engine.describe()


@pytest.mark.parametrize("local_rank,local_size,size,visible,expected", [
    (1, 2, 2, 2, 1),       # horovodrun -np 2 -H localhost:2: GPU local_rank
    (3, 4, 8, 1, 0),       # srun --gpus-per-task=1: each process sees only its GPU, whatever its local rank
    (0, 4, 8, 8, 0),
])
def test_horovod_takes_one_gpu_per_process(monkeypatch, local_rank, local_size, size, visible, expected):
    _fake_horovod(monkeypatch, rank=local_rank, size=size, local_rank=local_rank, local_size=local_size)
    monkeypatch.setenv("HOROVOD_SIZE", str(size))
    gpus = FakeGPUs(monkeypatch, visible)
    engine = distribution.create_engine("horovod")
    name = f"/physical_device:GPU:{expected}"
    assert gpus.chosen() == (name, [(name, True)]) and engine.gpu == name
    assert (engine.rank, engine.size, engine.local_rank, engine.local_size) == (local_rank, size, local_rank,
                                                                               local_size)


def test_horovod_one_process_per_node_with_several_gpus_is_refused(monkeypatch):
    _fake_horovod(monkeypatch, rank=1, size=2, local_rank=0, local_size=1)
    FakeGPUs(monkeypatch, 4)
    with pytest.raises(InputError, match="sees 4 GPUs but is the only one of the 2 ranks on its host"):
        distribution.create_engine("horovod")


@pytest.mark.parametrize("mpi,hint", [(False, "built without MPI.*horovodrun -np N -H host1:n,host2:n --gloo"),
                                      (True, "Horovod's MPI did not connect the processes")])
def test_a_horovod_rank_alone_under_mpirun_stops_with_how_to_launch(monkeypatch, mpi, hint):
    """The README's old `mpirun -np 8 ... --horovod` with a gloo-only build: 8 rank-0 jobs, one output_dir."""
    _fake_horovod(monkeypatch, rank=0, size=1, local_rank=0, local_size=1, mpi=mpi)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "8")
    with pytest.raises(InputError, match=r"mpirun \(Open MPI\) \(OMPI_COMM_WORLD_SIZE=8\) says this is one of 8 "
                                         f"processes, but it runs alone.*{hint}"):
        distribution.create_engine("horovod")


@pytest.mark.parametrize("environ,expected", [
    # TF_CONFIG alone: local ranks are the positions among the tasks on the same host
    ({"TF_CONFIG": _tf_config(["n1:1", "n1:2", "n2:1", "n2:2"], 3)}, (3, 4, 1, 2)),
    # the launcher's local rank wins (srun --ntasks-per-node=2; TF_CONFIG by IP, hosts as written)
    ({"TF_CONFIG": _tf_config(["10.0.0.1:1", "node1:2"], 1), "SLURM_NTASKS": "2", "SLURM_LOCALID": "1"},
     (1, 2, 1, 1)),
    ({"TF_CONFIG": _tf_config(["h:1", "h:2", "h:3"], 2), "OMPI_COMM_WORLD_SIZE": "3",
      "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1"}, (2, 3, 0, 1)),
    ({"TF_CONFIG": _tf_config(["h:1", "h:2"], 1), "LOCAL_RANK": "1"}, (1, 2, 1, 2)),
    ({}, (0, 1, 0, 1)),
])
def test_multi_worker_layout(environ, expected):
    layout = distribution.multi_worker_layout(environ)
    assert (layout.rank, layout.world_size, layout.local_rank, layout.local_size) == expected


@pytest.mark.parametrize("environ,visible,expected", [
    # every GPU visible to the 4 tasks of a host: task 3 takes GPU 3
    ({"TF_CONFIG": _tf_config(["h:1", "h:2", "h:3", "h:4"], 3)}, 4, 3),
    # the launcher restricted CUDA_VISIBLE_DEVICES: local rank 3 uses its one GPU (before: an error)
    ({"TF_CONFIG": _tf_config(["h:1", "h:2", "h:3", "h:4"], 3), "SLURM_NTASKS": "4", "SLURM_LOCALID": "3"}, 1, 0),
])
def test_multi_worker_takes_one_gpu_per_process(monkeypatch, environ, visible, expected):
    gpus = FakeGPUs(monkeypatch, visible)
    layout = distribution.multi_worker_layout(environ)
    assert distribution.use_one_gpu(layout.local_rank, layout.local_size, layout.world_size) == \
        f"/physical_device:GPU:{expected}"
    assert gpus.chosen()[1] == [(f"/physical_device:GPU:{expected}", True)]


def test_multi_worker_one_process_per_node_with_several_gpus_is_refused(monkeypatch):
    FakeGPUs(monkeypatch, 8)
    monkeypatch.setenv("TF_CONFIG", _tf_config(["node1:2222", "node2:2222"], 1))
    with pytest.raises(InputError, match="sees 8 GPUs but is the only one of the 2 ranks on its host.*"
                                         "start one process per GPU"):
        distribution.create_engine("multi_worker")


def test_multi_worker_all_reduces_with_nccl_on_gpus_and_ring_on_cpus():
    implementation = tf.distribute.experimental.CommunicationImplementation
    assert distribution.communication_options(gpu=True).implementation == implementation.NCCL
    assert distribution.communication_options(gpu=False).implementation == implementation.RING


@pytest.mark.parametrize("variable", ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", "WORLD_SIZE"])
def test_a_lone_process_among_several_stops_with_how_to_launch(monkeypatch, variable):
    monkeypatch.setenv(variable, "2")
    with pytest.raises(InputError, match=f"{variable}=2.* says this is one of 2 processes, but it runs alone.*"
                                         "--horovod \\(horovodrun .*--distribution=multi_worker"):
        distribution.create_engine("none")


@pytest.mark.parametrize("entry,args", [("run_pretraining.py", ["--horovod=false"]), ("run_classifier.py", [])])
def test_entries_exit_2_with_the_message_when_started_as_one_of_several(entry, args):
    env = _env()
    env.update(SLURM_NTASKS="4", SLURM_PROCID="2")
    proc = subprocess.run([sys.executable, str(ROOT / "NEZHA-TensorFlow" / entry), *args], env=env,
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("error: Slurm (SLURM_NTASKS=4) says this is one of 4 processes, but it runs alone")


@pytest.mark.parametrize("capability,fails", [((7, 0), True), ((8, 0), False), ((9, 0), False)])
def test_bfloat16_needs_compute_capability_8(monkeypatch, capability, fails):
    FakeGPUs(monkeypatch, 1, compute_capability=capability)
    options = run_pretraining.Options(bert_config_file="", input_file="", output_dir="", use_bf16=True)
    if fails:
        with pytest.raises(InputError, match="--use_bf16 needs a GPU of compute capability 8.0 \\(Ampere\\) or "
                                             "later; Fake GPU has 7.0: use --use_fp16"):
            run_pretraining.compute_dtype(options)
    else:
        assert run_pretraining.compute_dtype(options) == tf.bfloat16


def test_bfloat16_runs_on_cpu():
    options = run_pretraining.Options(bert_config_file="", input_file="", output_dir="", use_bf16=True)
    assert run_pretraining.compute_dtype(options) == tf.bfloat16


def _engine(rank: int, size: int) -> distribution.Engine:
    engine = distribution.Engine()
    engine.rank, engine.size = rank, size
    return engine


def test_file_sharding_matches_dataset_shard():
    files = [f"part-{i}" for i in range(7)]
    for size in (1, 2, 3):
        for rank in range(size):
            shard = _engine(rank, size).shard_files(files)
            dataset = tf.data.Dataset.from_tensor_slices(files).shard(size, rank)
            assert shard == [f.decode() for f in dataset.as_numpy_iterator()]
    with pytest.raises(InputError, match="Input Files must be sharded: 2 input file"):
        _engine(0, 3).shard_files(files[:2])


def test_single_engine_and_learning_rate_times_size():
    engine = distribution.create_engine("none")
    assert (engine.rank, engine.size, engine.local_rank, engine.is_chief) == (0, 1, 0, True)
    assert engine.scale_learning_rate(1e-4) == 1e-4
    assert _engine(1, 8).scale_learning_rate(1e-4) == pytest.approx(8e-4)
    assert not _engine(1, 8).is_chief
    tensors = [tf.constant([1.0, 2.0])]
    assert engine.all_reduce(tensors)[0] is tensors[0]


def test_engine_selection_errors(monkeypatch):
    with pytest.raises(InputError, match="--distribution must be one of"):
        distribution.create_engine("mirrored")
    with pytest.raises(InputError, match="contradicts"):
        distribution.create_engine("multi_worker", horovod=True)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    with pytest.raises(InputError, match="TF_CONFIG: expected JSON"):
        distribution.create_engine("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(InputError, match="TF_CONFIG"):
        distribution.create_engine("multi_worker")


@pytest.fixture(scope="module")
def single_process_run() -> dict:
    """One process, the doubled batch and the learning rate the two ranks use (BASE_LR x 2)."""
    weights, x, y = worker.make_problem()
    return worker.train(distribution.Engine(), weights, x, y, worker.BASE_LR * 2)


def _check_ranks(out: Path, reference: dict) -> None:
    ranks = [dict(np.load(out / f"rank{r}.npz")) for r in (0, 1)]
    initial, _, _ = worker.make_problem()
    for name in initial:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
        np.testing.assert_allclose(ranks[0][name], reference[name], rtol=1e-5, atol=1e-6, err_msg=name)
        assert not np.allclose(ranks[0][name], initial[name])  # it trained
    for rank in ranks:
        assert int(rank["size"]) == 2
        assert int(rank["global_step"]) == reference["global_step"] == worker.STEPS
        assert float(rank["loss_scale"]) == reference["loss_scale"] == 2.0 ** 32
    assert [int(rank["local_rank"]) for rank in ranks] == [0, 1]  # both on this host
    assert list(ranks[0]["files"]) == worker.FILES[0::2] and list(ranks[1]["files"]) == worker.FILES[1::2]


def _env() -> dict:
    """Processes on CPU (GPUs have the gpu tests), launched by the test alone."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    for name in launcher.VARIABLES:
        env.pop(name, None)
    return env


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_two_processes(tmp_path, single_process_run):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = _env()
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen([sys.executable, str(WORKER), "--distribution", "multi_worker",
                                       "--out", str(tmp_path)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=LAUNCH_TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, output in zip(procs, outputs):
        assert p.returncode == 0, output[-3000:]
    _check_ranks(tmp_path, single_process_run)
    for rank in (0, 1):
        result = np.load(tmp_path / f"rank{rank}.npz")
        assert str(result["communication"]) == "RING" and str(result["gpu"]) == ""
        assert float(result["collective_sum"]) == 2.0


def _horovod_available() -> bool:
    return (importlib.util.find_spec("horovod") is not None
            and importlib.util.find_spec("horovod.tensorflow.mpi_lib") is not None)


@pytest.mark.skipif(not _horovod_available(),
                    reason="Horovod is not installed (build it with `make horovod`, scripts/install_horovod.sh)")
def test_horovod_two_processes(tmp_path, single_process_run):
    horovodrun = shutil.which("horovodrun", path=os.path.dirname(sys.executable)) or shutil.which("horovodrun")
    assert horovodrun, "Horovod is installed but its horovodrun launcher is not on PATH"
    proc = subprocess.run([horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, str(WORKER),
                           "--distribution", "horovod", "--out", str(tmp_path)], env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:]
    _check_ranks(tmp_path, single_process_run)
