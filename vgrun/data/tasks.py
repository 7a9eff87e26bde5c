"""Synthetic sequence tasks for recurrent networks: pure JAX functions of a PRNG key.

Each task draws a fresh batch from a key, nothing is stored or downloaded, and
`sample` is jittable (the shapes depend only on the static `batch` and `seq_len`),
so a training loop can draw a new batch every step inside its `lax.scan`:

    task = TASKS["adding"]
    x, y = task.sample(key, 128, 200)       # x [B, T, n_in], y [B, n_out]
    loss = task_loss(task, rnn(x), y)       # rnn(x): [B, T, n_out], an output every step

The tasks are the classic long-time-lag benchmarks: the information that decides the
target is shown early and asked for late, so the gradient that teaches the network to
keep it must travel back through many time steps (Hochreiter & Schmidhuber 1997;
Bengio, Simard & Frasconi 1994).

`kind` says where the loss is taken; `task_loss` implements it and `baseline` is the
loss of the trivial strategy in that same normalization:

    regress_last    MSE of the last step's output, mean over batch and outputs.  y [B, n_out]
    classify_last   cross-entropy of the last step's logits, mean over batch.    y [B] int32
    classify_seq    cross-entropy at every step of the window `loss_steps(seq_len)`
                    = (start, stop), mean over batch and window steps.           y [B, stop - start] int32
                    The window always ends at the last step.

A loss that stays at `baseline` means the network has learned nothing that needs memory.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Task(NamedTuple):
    name: str
    # (key, batch, seq_len, dtype=float32) -> (x [B, length(seq_len), n_in], y); see `kind` for y
    sample: Callable
    n_in: int  # input features per step
    n_out: int  # regression outputs, or classes (logits) per scored step
    kind: str  # "regress_last" | "classify_last" | "classify_seq"
    baseline: Callable[[int], float]  # seq_len -> loss of the trivial strategy (see each task)
    loss_steps: Callable[[int], tuple]  # seq_len -> (start, stop): the output steps that carry targets
    length: Callable[[int], int]  # seq_len -> T, the number of time steps of x
    min_len: int  # the shortest seq_len the task is defined for


KINDS = ("regress_last", "classify_last", "classify_seq")


def _check_len(name: str, seq_len: int, min_len: int) -> None:
    # seq_len is a static Python int even under jit, so this check costs nothing at run time
    if seq_len < min_len:
        raise ValueError(f"task {name!r} needs seq_len >= {min_len}, got {seq_len}")


def _jit(sample: Callable) -> Callable:
    # one compiled program per (batch, seq_len, dtype): an eager call (evaluation, tests)
    # costs one compilation, not one per operation; inside a caller's jit it just inlines
    return jax.jit(sample, static_argnames=("batch", "seq_len", "dtype"))


def _last_step(seq_len: int) -> tuple:
    return (seq_len - 1, seq_len)


# --- the adding problem -------------------------------------------------------------


def adding() -> Task:
    """The adding problem as in Le, Jaitly & Hinton (2015) and Arjovsky, Shah & Bengio (2016).

    Each step has 2 inputs: a value ~ U[0, 1] and a marker. Exactly two markers are 1:
    one uniform over the first half, steps [0, T//2), one uniform over the second
    half, [T//2, T). Target: the sum of the two marked values. T = seq_len >= 2.

    Baseline: always answering the mean, 1.0, has MSE = Var(U1 + U2) = 2 / 12 = 1/6
    ~ 0.1667, whatever T (Arjovsky et al. 2016 quote 0.167).
    """

    def sample(key, batch: int, seq_len: int, dtype=jnp.float32):
        _check_len("adding", seq_len, 2)
        k_val, k_first, k_second = jax.random.split(key, 3)
        half = seq_len // 2
        values = jax.random.uniform(k_val, (batch, seq_len), dtype)  # [B, T]
        first = jax.random.randint(k_first, (batch,), 0, half)  # [B]
        second = jax.random.randint(k_second, (batch,), half, seq_len)  # [B]
        marks = jax.nn.one_hot(first, seq_len, dtype=dtype) + jax.nn.one_hot(second, seq_len, dtype=dtype)  # [B, T]
        x = jnp.stack([values, marks], -1)  # [B, T, 2]
        y = jnp.sum(values * marks, -1, keepdims=True)  # [B, 1]
        return x, y

    return Task("adding", _jit(sample), 2, 1, "regress_last", lambda seq_len: 1 / 6, _last_step, lambda t: t, 2)


HS97_FIRST = 10  # the first marker is one of the first ten steps


def adding_hs97() -> Task:
    """The original adding problem, Hochreiter & Schmidhuber (1997), Experiment 4.

    Each step has 2 inputs: a value ~ U[-1, 1] and a marker in {-1, 0, 1}. The first
    mark (value X1) is uniform over the first ten steps; the second (X2) uniform over
    the first T//2 - 1 still unmarked steps, so both lie in the first half, in either
    order. Markers are -1 at the first and last step (unless the first is marked) and
    0 elsewhere. As in the paper, X1 is set to 0 when the first mark falls on step 0.
    Target: 0.5 + (X1 + X2) / 4, in [0, 1]. T = seq_len >= 20.

    Unlike the paper, T is fixed (the paper draws it from [T, T + T/10] per sequence):
    a batch must have one static shape.

    Baseline: always answering the mean, 0.5, has MSE = (Var X1 + Var X2) / 16 with
    Var X2 = 1/3 (U[-1, 1]) and Var X1 = (9/10)(1/3) = 3/10 (0 with probability 1/10),
    = (3/10 + 1/3) / 16 = 19/480 ~ 0.03958. Without the X1 = 0 rule it would be
    (2/3) / 16 = 1/24 ~ 0.04167.
    """

    def sample(key, batch: int, seq_len: int, dtype=jnp.float32):
        _check_len("adding_hs97", seq_len, 2 * HS97_FIRST)
        k_val, k_first, k_second = jax.random.split(key, 3)
        half = seq_len // 2
        values = jax.random.uniform(k_val, (batch, seq_len), dtype, -1.0, 1.0)  # [B, T]
        first = jax.random.randint(k_first, (batch,), 0, HS97_FIRST)  # [B]
        # uniform over {0, ..., half-1} without `first`: draw from half-1 slots, skip `first`
        r = jax.random.randint(k_second, (batch,), 0, half - 1)
        second = r + (r >= first)  # [B]
        values = values.at[:, 0].set(jnp.where(first == 0, 0.0, values[:, 0]).astype(dtype))
        marked = jax.nn.one_hot(first, seq_len, dtype=dtype) + jax.nn.one_hot(second, seq_len, dtype=dtype)  # [B, T]
        ends = jnp.zeros((seq_len,), dtype).at[0].set(-1).at[-1].set(-1)  # [T]
        marks = jnp.where(marked > 0, marked, ends)  # [B, T]
        x = jnp.stack([values, marks], -1)  # [B, T, 2]
        y = 0.5 + jnp.sum(values * marked, -1, keepdims=True) / 4  # [B, 1]
        return x, y

    return Task("adding_hs97", _jit(sample), 2, 1, "regress_last", lambda seq_len: 19 / 480, _last_step, lambda t: t,
                2 * HS97_FIRST)


# --- the temporal order problem ------------------------------------------------------

X, Y = 0, 1  # input channels of the two relevant symbols; distractors are channels 2, 3, ...


def temporal_order(n_distractors: int = 4) -> Task:
    """The temporal order problem, Hochreiter & Schmidhuber (1997), Experiment 6a, in the
    form of Pascanu, Mikolov & Bengio (2013) (their `tempOrder.py`).

    Every step shows one symbol, one-hot over n_in = 2 + n_distractors channels:
    X (channel 0), Y (channel 1), and distractors a, b, c, d (channels 2..5 by default),
    drawn uniformly at every other step. Two steps show a relevant symbol, X or Y with
    probability 1/2 each: t1 uniform over [w, 2w) and t2 over [T//2, T//2 + w), with
    w = T // 10 (for T = 100: [10, 20) and [50, 60), HS97's positions). Label at the
    last step: the order, 2 * s1 + s2 with X = 0, Y = 1: XX = 0, XY = 1, YX = 2, YY = 3.
    T = seq_len >= 10.

    HS97 also start each sequence with a symbol E and end it with a trigger B (8
    symbols); here, as in Pascanu et al., the loss is taken at the last step, which
    needs no trigger. (Pascanu et al. number the classes s1 + 2 * s2.)

    Baseline: the labels are uniform, so the best constant prediction is chance,
    cross-entropy ln 4 ~ 1.386.
    """
    if n_distractors < 1:
        raise ValueError(f"temporal_order needs n_distractors >= 1, got {n_distractors}")
    n_in = 2 + n_distractors

    def sample(key, batch: int, seq_len: int, dtype=jnp.float32):
        _check_len("temporal_order", seq_len, 10)
        k_sym, k_t1, k_t2, k_rel = jax.random.split(key, 4)
        w, mid = seq_len // 10, seq_len // 2
        symbols = jax.random.randint(k_sym, (batch, seq_len), 2, n_in)  # [B, T] distractors
        t1 = jax.random.randint(k_t1, (batch, 1), w, 2 * w)  # [B, 1]
        t2 = jax.random.randint(k_t2, (batch, 1), mid, mid + w)  # [B, 1]
        rel = jax.random.randint(k_rel, (batch, 2), X, Y + 1)  # [B, 2] X or Y
        steps = jnp.arange(seq_len)  # [T]
        symbols = jnp.where(steps == t1, rel[:, :1], symbols)
        symbols = jnp.where(steps == t2, rel[:, 1:], symbols)
        x = jax.nn.one_hot(symbols, n_in, dtype=dtype)  # [B, T, n_in]
        y = (2 * rel[:, 0] + rel[:, 1]).astype(jnp.int32)  # [B]
        return x, y

    return Task("temporal_order", _jit(sample), n_in, 4, "classify_last", lambda seq_len: math.log(4), _last_step,
                lambda t: t, 10)


# --- the copy problem ----------------------------------------------------------------

BLANK = 0  # input and target class of the blank; symbols are 1..n_symbols, the delimiter n_symbols + 1


def copy_task(n_copy: int = 10, n_symbols: int = 8, recall_only: bool = False) -> Task:
    """The copy (noiseless memorization) problem after Hochreiter & Schmidhuber (1997),
    in the form of Arjovsky, Shah & Bengio (2016), section 4.1.

    With delay T = seq_len, the input has T + 2 * n_copy steps, one-hot over
    n_in = n_symbols + 2 classes (0 blank, 1..n_symbols symbols, n_symbols + 1 delimiter):

        steps [0, n_copy)                   n_copy symbols, uniform from 1..n_symbols
        steps [n_copy, n_copy + T - 1)      blank
        step  n_copy + T - 1                the delimiter: "recall now"
        steps [n_copy + T, T + 2 * n_copy)  blank

    Target (n_out = n_symbols + 1 classes, blank and symbols): blank for the first
    T + n_copy steps, then the n_copy symbols in order; symbol i is shown at step i
    and asked for at step n_copy + T + i. T = seq_len >= 1.

    Loss window (`loss_steps`) and baseline, for the memoryless strategy (blank with
    certainty until the recall, then uniform over the n_symbols symbols):
        recall_only=False (Arjovsky et al.): every step, y [B, T + 2 n_copy];
            baseline n_copy * ln(n_symbols) / (T + 2 n_copy)  (10 ln 8 / 1020 = 0.0204 for T = 1000)
        recall_only=True: the last n_copy steps, y [B, n_copy];
            baseline ln(n_symbols)  (a long delay no longer shrinks it)
    """
    if n_copy < 1 or n_symbols < 2:
        raise ValueError(f"copy needs n_copy >= 1 and n_symbols >= 2, got {n_copy}, {n_symbols}")
    n_in = n_symbols + 2

    def length(seq_len: int) -> int:
        return seq_len + 2 * n_copy

    def loss_steps(seq_len: int) -> tuple:
        total = length(seq_len)
        return (total - n_copy if recall_only else 0, total)

    def baseline(seq_len: int) -> float:
        start, stop = loss_steps(seq_len)
        return n_copy * math.log(n_symbols) / (stop - start)

    def sample(key, batch: int, seq_len: int, dtype=jnp.float32):
        _check_len("copy", seq_len, 1)
        shown = jax.random.randint(key, (batch, n_copy), 1, n_symbols + 1, dtype=jnp.int32)  # [B, n_copy]
        tokens = jnp.concatenate([
            shown,
            jnp.full((batch, seq_len - 1), BLANK, jnp.int32),
            jnp.full((batch, 1), n_symbols + 1, jnp.int32),  # the delimiter
            jnp.full((batch, n_copy), BLANK, jnp.int32),
        ], 1)  # [B, T + 2 n_copy]
        x = jax.nn.one_hot(tokens, n_in, dtype=dtype)  # [B, T + 2 n_copy, n_in]
        if recall_only:
            return x, shown  # [B, n_copy]
        y = jnp.concatenate([jnp.full((batch, seq_len + n_copy), BLANK, jnp.int32), shown], 1)  # [B, T + 2 n_copy]
        return x, y

    return Task("copy", _jit(sample), n_in, n_symbols + 1, "classify_seq", baseline, loss_steps, length, 1)


# --- the registry and the loss --------------------------------------------------------

BUILDERS = {"adding": adding, "adding_hs97": adding_hs97, "temporal_order": temporal_order, "copy": copy_task}
TASKS: dict[str, Task] = {name: build() for name, build in BUILDERS.items()}  # default parameters


def make(name: str, **params) -> Task:
    """The task `name` with non-default parameters, e.g. make("copy", n_copy=5)."""
    return BUILDERS[name](**params)


def task_loss(task: Task, out: jax.Array, y: jax.Array) -> jax.Array:
    """The loss in the normalization `task.baseline` uses; `out` [B, T, n_out] holds the
    network's output at every step (regression values, or logits)."""
    if task.kind == "regress_last":
        return jnp.mean((out[:, -1] - y) ** 2)
    if task.kind == "classify_last":
        logp = jax.nn.log_softmax(out[:, -1])  # [B, n_out]
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], -1))
    # classify_seq: the window is the last y.shape[1] steps (loss_steps always ends at T)
    logp = jax.nn.log_softmax(out[:, out.shape[1] - y.shape[1]:])  # [B, W, n_out]
    # take_along_axis, not a one-hot product: 0 * -inf would be nan for a certain prediction
    return -jnp.mean(jnp.take_along_axis(logp, y[..., None], -1))
