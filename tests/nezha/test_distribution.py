"""distribution.py: rank bookkeeping in-process, and two real local processes per engine that must end with
identical weights, equal to one process trained on the doubled batch."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import distribution
from utils.errors import InputError

WORKER = Path(__file__).with_name("dist_worker.py")
LAUNCH_TIMEOUT_S = 120


def _load_worker():
    spec = importlib.util.spec_from_file_location("nezha_dist_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


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
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
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
