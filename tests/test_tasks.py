import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrun.data.tasks import KINDS, TASKS, Task, make, task_loss

KEY = jax.random.PRNGKey(0)
B = 4096
# one (B, T) per task, shared by the tests so each task compiles few programs;
# odd lengths: halves and tenths must floor
LENS = {"adding": 31, "adding_hs97": 41, "temporal_order": 100, "copy": 13}
loss_fn = jax.jit(task_loss, static_argnums=0)


def draw(task: Task, batch=B, seq_len=None, key=KEY):
    x, y = task.sample(key, batch, seq_len or LENS[task.name])
    return np.asarray(x), np.asarray(y)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_shapes_dtypes_and_kind(name):
    task = TASKS[name]
    T = LENS[name]
    x, y = task.sample(KEY, B, T)
    assert task.kind in KINDS
    assert x.shape == (B, task.length(T), task.n_in) and x.dtype == jnp.float32
    start, stop = task.loss_steps(T)
    assert stop == task.length(T)  # the window ends at the last step (task_loss relies on it)
    if task.kind == "regress_last":
        assert y.shape == (B, task.n_out) and y.dtype == jnp.float32
        assert (start, stop) == (T - 1, T)
    elif task.kind == "classify_last":
        assert y.shape == (B,) and y.dtype == jnp.int32
        assert (start, stop) == (T - 1, T)
    else:
        assert y.shape == (B, stop - start) and y.dtype == jnp.int32
    if y.dtype == jnp.int32:
        y = np.asarray(y)  # (NumPy: an eager jnp reduction would compile a program of its own)
        assert 0 <= y.min() and y.max() < task.n_out
    # the dtype argument reaches the inputs (and regression targets), labels stay int32;
    # eval_shape traces without compiling
    x16, y16 = jax.eval_shape(functools.partial(task.sample, batch=B, seq_len=T, dtype=jnp.bfloat16), KEY)
    assert x16.dtype == jnp.bfloat16
    assert y16.dtype == (jnp.bfloat16 if task.kind == "regress_last" else jnp.int32)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_sample_traces_inside_jit_and_scan(name):
    task = TASKS[name]
    T = LENS[name]
    keys = jax.random.split(KEY, 3)

    def step(carry, key):
        return carry, task.sample(key, B, T)  # traced inside the caller's jit and scan

    _, (xs, ys) = jax.jit(lambda ks: jax.lax.scan(step, 0, ks))(keys)
    assert xs.shape == (3, B, task.length(T), task.n_in)
    assert not np.array_equal(np.asarray(xs[0]), np.asarray(xs[1]))  # a new batch every step
    x2, y2 = task.sample(keys[2], B, T)  # the same batch as a direct call with that key
    np.testing.assert_allclose(np.asarray(xs[2]), np.asarray(x2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ys[2]), np.asarray(y2), rtol=1e-6)


@pytest.mark.parametrize("name,short", [("adding", 1), ("adding_hs97", 19), ("temporal_order", 9), ("copy", 0)])
def test_too_short_sequences_are_refused(name, short):
    with pytest.raises(ValueError, match="seq_len"):
        TASKS[name].sample(KEY, 2, short)
    TASKS[name].sample(KEY, 2, short + 1)  # the shortest allowed works


def test_adding_markers_and_target():
    T = LENS["adding"]
    x, y = draw(TASKS["adding"])
    values, marks = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() <= 1 and values.std() == pytest.approx(math.sqrt(1 / 12), rel=0.05)
    assert set(np.unique(marks)) == {0.0, 1.0}
    half = T // 2
    assert (marks[:, :half].sum(1) == 1).all()  # one in [0, T//2)
    assert (marks[:, half:].sum(1) == 1).all()  # one in [T//2, T)
    first, second = marks[:, :half].argmax(1), half + marks[:, half:].argmax(1)
    rows = np.arange(B)
    np.testing.assert_allclose(y[:, 0], values[rows, first] + values[rows, second], rtol=1e-6)
    # both halves are covered: the markers are spread, not stuck at one step
    assert len(np.unique(first)) == half and len(np.unique(second)) == T - half


def test_adding_hs97_markers_and_target():
    T = LENS["adding_hs97"]
    x, y = draw(TASKS["adding_hs97"])
    values, marks = x[..., 0], x[..., 1]
    assert values.min() >= -1 and values.max() <= 1 and values.min() < -0.99 and values.max() > 0.99
    marked = marks == 1
    assert (marked.sum(1) == 2).all()
    assert not marked[:, T // 2:].any()  # both in the first half
    assert marked[:, :10].any(1).all()  # one in the first ten
    assert len(np.unique(np.nonzero(marked)[1])) == T // 2  # the second mark covers the first half
    # -1 at the first and last step unless marked, 0 elsewhere
    assert (marks[:, -1] == -1).all()
    assert ((marks[:, 0] == -1) | marked[:, 0]).all()
    assert (marks[:, 1:-1][~marked[:, 1:-1]] == 0).all()
    np.testing.assert_allclose(y[:, 0], 0.5 + (values * marked).sum(1) / 4, rtol=1e-6)
    # X1 = 0 when the first mark is step 0; step 0 is surely the first mark when the other is past step 9
    other_late = marked[:, 10:].any(1)
    sure_first = marked[:, 0] & other_late
    assert sure_first.sum() > 100 and (values[sure_first, 0] == 0).all()
    # and the value at step 0 is random otherwise
    assert (values[~marked[:, 0], 0] != 0).all()


@pytest.mark.parametrize("name,mean,mse", [("adding", 1.0, 1 / 6), ("adding_hs97", 0.5, 19 / 480)])
def test_mean_answer_baseline_measured_on_100k_sequences(name, mean, mse):
    task = TASKS[name]
    T = 20
    assert task.baseline(T) == pytest.approx(mse) and task.baseline(1000) == pytest.approx(mse)
    x, y = task.sample(jax.random.PRNGKey(1), 100_000, T)
    measured = float(loss_fn(task, jnp.full(x.shape[:2] + (1,), mean), y))
    # the standard error of the estimate is ~0.3 %; 1/24 is 5 % away from 19/480
    assert measured == pytest.approx(mse, rel=0.015)
    assert np.asarray(y).mean() == pytest.approx(mean, abs=0.005)  # the constant is the mean


def test_temporal_order_symbols_and_labels():
    task = TASKS["temporal_order"]
    T = LENS["temporal_order"]
    assert T == 100  # the positions below are HS97's
    x, y = draw(task)
    assert (x.sum(-1) == 1).all()  # one symbol per step
    symbols = x.argmax(-1)  # [B, T]
    relevant = symbols < 2  # X = 0, Y = 1
    assert (relevant.sum(1) == 2).all()
    assert (relevant[:, 10:20].sum(1) == 1).all() and (relevant[:, 50:60].sum(1) == 1).all()
    t1 = 10 + relevant[:, 10:20].argmax(1)
    t2 = 50 + relevant[:, 50:60].argmax(1)
    assert set(t1) == set(range(10, 20)) and set(t2) == set(range(50, 60))
    rows = np.arange(len(y))
    np.testing.assert_array_equal(y, 2 * symbols[rows, t1] + symbols[rows, t2])  # XX 0, XY 1, YX 2, YY 3
    distractors = symbols[~relevant]
    assert set(np.unique(distractors)) == set(range(2, task.n_in))
    # balanced: each class 1/4 within 5 standard errors, and the constant-prediction loss is ln 4
    freq = np.bincount(y, minlength=4) / len(y)
    assert np.abs(freq - 0.25).max() < 5 * math.sqrt(0.25 * 0.75 / len(y))
    assert -(freq * np.log(freq)).sum() == pytest.approx(task.baseline(T), rel=1e-3)
    assert task.baseline(T) == pytest.approx(math.log(4))


def test_temporal_order_window_scales_with_length():
    x, _ = draw(TASKS["temporal_order"], seq_len=37)  # w = 3, T // 2 = 18
    pos = np.nonzero(x.argmax(-1) < 2)[1]
    assert set(pos) == {3, 4, 5, 18, 19, 20}


@pytest.mark.parametrize("n_copy,n_symbols,recall_only", [(10, 8, False), (10, 8, True), (3, 5, False)])
def test_copy_layout_targets_and_memoryless_baseline(n_copy, n_symbols, recall_only):
    default = (n_copy, n_symbols, recall_only) == (10, 8, False)
    task = TASKS["copy"] if default else make("copy", n_copy=n_copy, n_symbols=n_symbols, recall_only=recall_only)
    T = 13
    L = T + 2 * n_copy
    assert task.length(T) == L and task.n_in == n_symbols + 2 and task.n_out == n_symbols + 1
    x, y = draw(task, seq_len=T)
    assert x.shape[1] == L and (x.sum(-1) == 1).all()
    tokens = x.argmax(-1)  # [B, L]
    shown = tokens[:, :n_copy]
    assert shown.min() == 1 and shown.max() == n_symbols  # every symbol occurs, no blank or delimiter
    assert (tokens[:, n_copy:n_copy + T - 1] == 0).all()
    assert (tokens[:, n_copy + T - 1] == n_symbols + 1).all()  # the delimiter, once
    assert (tokens[:, n_copy + T:] == 0).all()
    start, stop = task.loss_steps(T)
    assert (start, stop) == ((L - n_copy, L) if recall_only else (0, L))
    full = np.zeros((B, L), np.int32)
    full[:, L - n_copy:] = shown  # blank, then the shown symbols in order
    np.testing.assert_array_equal(y, full[:, start:stop])
    # the memoryless strategy scores exactly the documented baseline
    logits = np.full((1, L, task.n_out), -np.inf, np.float32)
    logits[:, :L - n_copy, 0] = 0.0  # blank with certainty
    logits[:, L - n_copy:, 1:] = 0.0  # uniform over the symbols
    loss = float(loss_fn(task, jnp.broadcast_to(jnp.asarray(logits), (B, L, task.n_out)), jnp.asarray(y)))
    expected = math.log(n_symbols) if recall_only else n_copy * math.log(n_symbols) / (T + 2 * n_copy)
    assert task.baseline(T) == pytest.approx(expected)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_registry_defaults():
    assert set(TASKS) == {"adding", "adding_hs97", "temporal_order", "copy"}
    assert all(name == task.name for name, task in TASKS.items())
    assert (TASKS["adding"].n_in, TASKS["adding"].n_out) == (2, 1)
    assert (TASKS["temporal_order"].n_in, TASKS["temporal_order"].n_out) == (6, 4)
    assert make("temporal_order", n_distractors=2).n_in == 4
    assert TASKS["copy"].baseline(1000) == pytest.approx(10 * math.log(8) / 1020)  # Arjovsky et al.: 0.0204
