"""The one training loop: make_train(cfg, data) -> Program.

The run is a `lax.scan` over steps, cut into `n_chunks` equal chunks so the host can
show progress, stop on divergence and honour Ctrl-C between chunks. Inside a chunk,
every `trace_every`-th step is a traced step (per-layer probes, activation
statistics) and the others are plain steps; both are the same `step` function with a
static `traced` flag. Everything is jitted once per job: `init`, `chunk`, `evaluate`.
`train(key)` runs the whole thing as a single program (for vmapping over seeds).
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import numpy as np

import jax
import jax.numpy as jnp
import optax

from vgrun import models, optim, temporal
from vgrun.models import rnn
from vgrun.names import RECURRENT
from vgrun.problem import Problem
from vgrun.problem import make as make_problem
from vgrun.traces import Trace, global_norm, trace_global_norm, trace_step



class Carry(NamedTuple):
    params: dict
    state: dict  # batchnorm running statistics
    opt_state: tuple
    key: jax.Array  # batch-sampling key; step i uses fold_in(key, i)
    step: jax.Array


class Program(NamedTuple):
    init: Callable  # key -> Carry
    chunk: Callable  # (Carry, arrays) -> (Carry, (metrics: dict of [S], trace: of [S / trace_every, ...]))
    evaluate: Callable  # (Carry, arrays) -> (held-out loss, held-out accuracy)
    train: Callable  # (key, arrays) -> (Carry, outputs stacked over chunks)
    problem: Problem
    n_chunks: int
    chunk_steps: int


def n_chunks_for(steps: int, trace_every: int, wanted: int) -> int:
    """The divisor of steps / trace_every nearest to `wanted` (chunks hold whole trace blocks)."""
    blocks = steps // trace_every
    divisors = [d for d in range(1, blocks + 1) if blocks % d == 0]
    return min(divisors, key=lambda d: (abs(d - wanted), d))


def is_recurrent(cfg) -> bool:
    return cfg.model.name in RECURRENT


def make_train(cfg, problem: Problem | None = None) -> Program:
    dtype = jnp.dtype(cfg.dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    problem = problem or make_problem(cfg, dtype)
    recurrent = is_recurrent(cfg)
    if recurrent:
        model = rnn.make(cfg, problem.n_in, problem.n_out, dtype, problem.n_out_steps)
    else:
        model = models.MODELS[cfg.model.name].make(cfg, problem.n_in, problem.n_out, dtype)
    opt = optim.make(cfg.optimizer, cfg.steps)
    batch, every = cfg.batch_size, cfg.trace_every
    n_chunks = n_chunks_for(cfg.steps, every, cfg.chunks)
    chunk_steps = cfg.steps // n_chunks
    clipping = cfg.optimizer.clip_norm is not None  # then the pre-clip norm is kept at every step

    def probes():
        if recurrent:
            return model.probes(batch, problem.seq_steps)
        return model.probes()

    def init(key):
        k_param, k_data = jax.random.split(key)
        params, state = model.init(k_param)
        return Carry(params, state, opt.init(params), k_data, jnp.zeros((), jnp.int32))

    def evaluate(carry, a):
        y_pred, _, _ = model.apply(carry.params, carry.state, a["x_test"], train=False)
        return problem.loss_and_acc(y_pred, a["y_test"])

    def step(carry: Carry, a, traced: bool):
        key = jax.random.fold_in(carry.key, carry.step)
        x, y = problem.sample(key, a, batch)

        def loss_fn(params, probes):
            y_pred, state, stats = model.apply(params, carry.state, x, probes, train=True, stats=traced)
            loss, acc = problem.loss_and_acc(y_pred, y)
            return loss, (acc, state, stats)

        if traced:
            (loss, (acc, state, stats)), (grads, probe_grads) = jax.value_and_grad(
                loss_fn, argnums=(0, 1), has_aux=True
            )(carry.params, probes())
        else:
            (loss, (acc, state, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(carry.params, None)
        updates, opt_state = opt.update(grads, carry.opt_state, carry.params)
        params = optax.apply_updates(carry.params, updates)

        nan = jnp.asarray(jnp.nan, dtype)
        # before clipping; underflow-safe, so only where needed (it costs a pass over the grads)
        metrics = {"loss": loss, "acc": acc, "grad_norm": global_norm(grads) if clipping else nan}
        trace = None
        if traced and recurrent:
            trace = temporal.trace_step(model, carry.params, x, grads, probe_grads, updates,
                                        jax.random.fold_in(key, 1), batch)
            metrics["grad_norm"] = global_norm(grads)
        elif traced:
            trace = trace_step(grads, probe_grads, carry.params, updates, stats, batch)
            metrics["grad_norm"] = trace_global_norm(grads, trace)
        return Carry(params, state, opt_state, carry.key, carry.step + 1), metrics, trace

    def block(carry, a):
        """One traced step, then trace_every - 1 plain steps."""
        carry, m0, trace = step(carry, a, traced=True)
        if every == 1:
            return carry, (jax.tree_util.tree_map(lambda v: v[None], m0), trace)
        carry, ms = jax.lax.scan(lambda c, _: step(c, a, False)[:2], carry, length=every - 1)
        metrics = jax.tree_util.tree_map(lambda u, v: jnp.concatenate([u[None], v]), m0, ms)
        return carry, (metrics, trace)

    def chunk(carry, a):
        """chunk_steps steps; the held-out set is evaluated once, before the first."""
        test = evaluate(carry, a)
        carry, (metrics, trace) = jax.lax.scan(lambda c, _: block(c, a), carry, length=chunk_steps // every)
        metrics = jax.tree_util.tree_map(lambda v: v.reshape((chunk_steps,) + v.shape[2:]), metrics)
        nan = jnp.full((chunk_steps - 1,), jnp.nan, dtype)
        metrics["test_loss"], metrics["test_acc"] = (jnp.concatenate([t[None], nan]) for t in test)
        return carry, (metrics, trace)

    def train(key, a):
        return jax.lax.scan(lambda c, _: chunk(c, a), init(key), length=n_chunks)

    return Program(
        init=jax.jit(init),
        chunk=jax.jit(chunk, donate_argnums=0),
        evaluate=jax.jit(evaluate),
        train=jax.jit(train),
        problem=problem,
        n_chunks=n_chunks,
        chunk_steps=chunk_steps,
    )


class Result(NamedTuple):
    problem: Problem
    carry: Carry
    metrics: dict  # name -> [steps_done] numpy
    traces: Trace  # Trace (feed-forward: fields [traced steps, L]) or TimeTrace, numpy
    status: str  # completed | diverged | interrupted
    compile_s: float  # init + compiling the chunk program
    train_s: float  # the training loop after compilation
    test: tuple  # final (held-out loss, held-out accuracy)


def run(cfg, problem: Problem | None = None, key=None, on_chunk=None, should_stop=lambda: False) -> Result:
    """Train chunk by chunk on the host.

    status: completed; diverged (a non-finite loss or gradient norm: training stops
    after that chunk and everything measured is kept); interrupted (should_stop()
    became true; the chunk in flight finishes first).
    """
    prog = make_train(cfg, problem)
    every = cfg.trace_every
    d = prog.problem.arrays
    t0 = time.perf_counter()
    carry = prog.init(jax.random.PRNGKey(cfg.seed) if key is None else key)
    chunk = prog.chunk.lower(carry, d).compile()
    evaluate = prog.evaluate.lower(carry, d).compile()  # compiled here, so train_s is training only
    compile_s = time.perf_counter() - t0
    metrics, traces, status = [], [], "completed"
    for i in range(prog.n_chunks):
        carry, (m, t) = chunk(carry, d)
        m, t = jax.device_get((m, t))
        metrics.append(m)
        traces.append(t)
        if on_chunk is not None:
            on_chunk(i + 1, prog, m)
        if not np.isfinite(m["loss"]).all() or not np.isfinite(m["grad_norm"][::every]).all():
            status = "diverged"
            break
        if should_stop() and i + 1 < prog.n_chunks:
            status = "interrupted"
            break
    test = tuple(float(v) for v in evaluate(carry, d))
    train_s = time.perf_counter() - t0 - compile_s
    metrics = {k: np.concatenate([m[k] for m in metrics]) for k in metrics[0]}
    traces = type(traces[0])(*(np.concatenate([getattr(t, f) for t in traces]) for f in traces[0]._fields))
    return Result(prog.problem, carry, metrics, traces, status, compile_s, train_s, test)
