"""One rank of the data-parallel tests: a 2-layer dense net trained with LAMB on this rank's half of each
global batch, through distribution.create_engine and optimization.TrainStep as run_pretraining uses them.

    python dist_worker.py --distribution {multi_worker,horovod} --out DIR   (one process per rank)

Writes DIR/rank<R>.npz with the final weights, global_step, loss scale, this rank's file shard, GPU, and under
MultiWorker the collective implementation and a sum of ones over the ranks. The test
imports `make_problem` and `train` to compute the single-process run on the doubled batch.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

STEPS = 4
PER_RANK_BATCH = 6
BASE_LR = 0.05
FILES = [f"part-{i:05d}.tfrecord" for i in range(5)]


def make_problem(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Initial weights and STEPS global batches (2 * PER_RANK_BATCH rows each) of a regression problem."""
    rng = np.random.RandomState(seed)
    weights = {
        "layer_0/kernel": rng.normal(0, 0.5, (5, 7)).astype(np.float32),
        "layer_0/bias": rng.normal(0, 0.1, (7,)).astype(np.float32),
        "layer_1/kernel": rng.normal(0, 0.5, (7, 3)).astype(np.float32),
        "layer_1/bias": np.zeros((3,), np.float32),
    }
    x = rng.normal(0, 1, (STEPS, 2 * PER_RANK_BATCH, 5)).astype(np.float32)
    y = rng.normal(0, 1, (STEPS, 2 * PER_RANK_BATCH, 3)).astype(np.float32)
    return weights, x, y


def train(engine, weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, learning_rate: float) -> dict:
    """Broadcast rank 0's weights, then one LAMB step (loss scaling on) per batch in x, y."""
    import tensorflow as tf
    import optimization

    variables = {name: tf.Variable(value, name=name) for name, value in weights.items()}
    engine.broadcast_variables(list(variables.values()))

    def loss_fn(batch):
        inputs, targets = batch
        hidden = tf.tanh(tf.matmul(inputs, variables["layer_0/kernel"]) + variables["layer_0/bias"])
        outputs = tf.matmul(hidden, variables["layer_1/kernel"]) + variables["layer_1/bias"]
        return tf.reduce_mean(tf.square(outputs - targets))

    optimizer = optimization.create_optimizer(learning_rate, num_train_steps=10, num_warmup_steps=2,
                                              optimizer="lamb")
    step = optimization.build_train_step(loss_fn, list(variables.values()), optimizer, engine=engine,
                                         loss_scaling=True)
    batches = iter(zip(tf.constant(x), tf.constant(y)))
    for _ in range(len(x)):
        result = step(batches)
    out = {name: v.numpy() for name, v in variables.items()}
    out["global_step"] = int(step.global_step.numpy())
    out["loss_scale"] = float(result["loss_scale"].numpy())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--distribution", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path[:0] = [os.path.join(root, "NEZHA-TensorFlow"), root]
    import distribution

    engine = distribution.create_engine(args.distribution)
    weights, x, y = make_problem()
    if not engine.is_chief:  # other ranks start elsewhere: the broadcast must fix that
        weights = {name: value + 1.0 for name, value in weights.items()}
    shard = slice(engine.rank * PER_RANK_BATCH, (engine.rank + 1) * PER_RANK_BATCH)
    result = train(engine, weights, x[:, shard], y[:, shard], engine.scale_learning_rate(BASE_LR))
    result["size"] = engine.size
    result["local_rank"] = engine.local_rank
    result["gpu"] = engine.gpu or ""
    result["communication"] = getattr(engine, "communication", "")
    if args.distribution == "multi_worker":  # the strategy's own collective, which all_reduce skips for one rank
        import tensorflow as tf

        result["collective_sum"] = float(engine._sum([tf.ones([1])])[0][0])
    result["files"] = np.array(engine.shard_files(FILES))
    np.savez(os.path.join(args.out, f"rank{engine.rank}.npz"), **result)


if __name__ == "__main__":
    main()
