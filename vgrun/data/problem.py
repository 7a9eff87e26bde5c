"""What a network is trained on: batches, the loss, the held-out set and a baseline loss.

Two sources: a fixed dataset (`vgrun.data.datasets`: batches drawn with replacement from the
training split) and a sequence task (`vgrun.data.tasks`: a fresh batch generated from the
step's key, and a fixed held-out batch). Both give the training loop the same thing.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vgrun.data import datasets

N_TEST_SEQUENCES = 1024
TEST_KEY = 12345  # the held-out batch of a sequence task is the same for every run


class Problem(NamedTuple):
    n_in: int
    n_out: int
    n_out_steps: int  # the model reads out its last n_out_steps time steps (1: the last)
    arrays: dict  # device arrays passed to the jitted loop: x, y (datasets), x_test, y_test
    sample: Callable  # (key, arrays, batch) -> (x, y)
    loss_and_acc: Callable  # (y_pred, y) -> (loss, accuracy; NaN for regression)
    baseline: float  # loss of the best constant (or memoryless) answer
    seq_steps: int  # time steps of an input sequence (0 for feed-forward data)
    x_shape: tuple = ()  # one example's input shape, where it is not (n_in,): images [H, W, C], sequences [T, n_in]


def _loss_fn(classify: bool, dtype):
    def loss_and_acc(y_pred, y):
        if classify:  # y: int labels [B] or [B, T_out]; y_pred [..., C]
            loss = optax.softmax_cross_entropy_with_integer_labels(y_pred, y).mean()
            return loss, jnp.mean(jnp.argmax(y_pred, -1) == y).astype(dtype)
        return jnp.mean(jnp.square(y_pred - y)), jnp.asarray(jnp.nan, dtype)

    return loss_and_acc


def from_dataset(cfg, dtype) -> Problem:
    return from_data(datasets.load(cfg.data), dtype)


def from_data(data: datasets.Dataset, dtype) -> Problem:
    ydt = jnp.int32 if data.classify else dtype
    arrays = {
        "x": jnp.asarray(data.x_train, dtype),
        "y": jnp.asarray(data.y_train, ydt),
        "x_test": jnp.asarray(data.x_test, dtype),
        "y_test": jnp.asarray(data.y_test, ydt),
    }

    def sample(key, a, batch):
        idx = jax.random.randint(key, (batch,), 0, a["x"].shape[0])
        return a["x"][idx], a["y"][idx]

    shape = tuple(data.x_train.shape[1:])
    return Problem(int(np.prod(shape)), data.n_out, 1, arrays, sample, _loss_fn(data.classify, dtype),
                   datasets.baseline_loss(data), 0, shape if len(shape) > 1 else ())


def from_task(cfg, dtype) -> Problem:
    from vgrun.data import tasks

    task = tasks.TASKS[cfg.data.name]
    classify = task.kind.startswith("classify")
    start, stop = task.loss_steps(cfg.seq_len)
    x_test, y_test = task.sample(jax.random.PRNGKey(TEST_KEY), N_TEST_SEQUENCES, cfg.seq_len, dtype)
    arrays = {"x_test": x_test, "y_test": y_test if classify else y_test.astype(dtype)}

    def sample(key, a, batch):
        x, y = task.sample(key, batch, cfg.seq_len, dtype)
        return x, (y if classify else y.astype(dtype))

    n_out_steps = stop - start if task.kind == "classify_seq" else 1
    steps = task.length(cfg.seq_len)
    return Problem(task.n_in, task.n_out, n_out_steps, arrays, sample, _loss_fn(classify, dtype),
                   task.baseline(cfg.seq_len), steps, (steps, task.n_in))


def make(cfg, dtype) -> Problem:
    return from_dataset(cfg, dtype) if cfg.data.name in datasets.DATASETS else from_task(cfg, dtype)
