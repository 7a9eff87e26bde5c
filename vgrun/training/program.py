"""The training program: make_train(cfg, problem) -> Program of jitted functions.

The run is a `lax.scan` over steps, cut into `n_chunks` equal chunks so the host can
show progress, stop on divergence and honour Ctrl-C between chunks. Inside a chunk,
every `trace_every`-th step is a traced step (per-layer probes, activation
statistics) and the others are plain steps; both are the same `step` function with a
static `traced` flag. Everything is jitted once per job: `init`, `chunk`, `evaluate`.
`train(key)` runs the whole thing as a single program (for vmapping over seeds).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from vgrun.config import hyper
from vgrun.config.names import RECURRENT
from vgrun.nn import make_model
from vgrun.probes import time as temporal
from vgrun.training import optim
from vgrun.data.problem import Problem
from vgrun.data.problem import make as make_problem
from vgrun.probes.layers import cond_all, global_norm, layer_norms, trace_global_norm, trace_step



class Carry(NamedTuple):
    params: dict
    state: dict  # batchnorm running statistics
    opt_state: tuple
    key: jax.Array  # batch-sampling key; step i uses fold_in(key, i)
    step: jax.Array
    hp: dict  # dynamic hyperparameters (vgrun.config.hyper): dotted key -> scalar, read inside the program


class Program(NamedTuple):
    init: Callable  # (key, hp) -> Carry
    chunk: Callable  # (Carry, arrays) -> (Carry, (metrics: dict of [S], trace: of [S / trace_every, ...]))
    #                  recurrent: trace = (TimeTrace, W_rec), completed on the host by vgrun.probes.time.finish
    evaluate: Callable  # (Carry, arrays) -> (held-out loss, held-out accuracy)
    train: Callable  # (key, hp, arrays) -> (Carry, outputs stacked over chunks)
    problem: Problem
    n_chunks: int
    chunk_steps: int
    members: int  # 1: plain functions; n > 1: vmapped over a leading axis of n members (key, hp, Carry)
    init_jit: Callable  # (key, hp) -> Carry, jitted, hp required (`init` fills in the config's)
    histogram: Callable | None = None  # (Carry, arrays) -> {quantity: [layers, N_COUNTS]} (`make_histogram`)


def resolve(cfg) -> tuple:
    """(cfg, names) as they apply to a custom model (model=custom): depth = its traced layers less
    the output; names: {"layers": its taps' rows and "output", "leaves": its parameter leaves}
    (`vgrun.nn.custom`). Other models: (cfg, {}). Raises ConfigError for a bad model.target."""
    import dataclasses

    if cfg.model.name != "custom":
        return cfg, {}
    model = make_model(cfg, make_problem(cfg, jnp.dtype(cfg.dtype)))
    return dataclasses.replace(cfg, depth=model.n_layers - 1), {"layers": model.names, "leaves": model.leaves}


def n_chunks_for(steps: int, trace_every: int, wanted: int) -> int:
    """The divisor of steps / trace_every nearest to `wanted` (chunks hold whole trace blocks)."""
    blocks = steps // trace_every
    divisors = [d for d in range(1, blocks + 1) if blocks % d == 0]
    return min(divisors, key=lambda d: (abs(d - wanted), d))


def is_recurrent(cfg) -> bool:
    return cfg.model.name in RECURRENT


def make_chunk(step, evaluate, every: int, chunk_steps: int, dtype) -> Callable:
    """chunk(carry, arrays) -> (carry, (metrics: dict of [chunk_steps], trace: of [chunk_steps / every, ...])):
    `step(carry, arrays, traced) -> (carry, metrics, trace)` scanned chunk_steps times, every
    `every`-th step traced; the held-out set (`evaluate`) once, before the first step."""

    def block(carry, a):
        """One traced step, then every - 1 plain steps."""
        carry, m0, trace = step(carry, a, traced=True)
        if every == 1:
            return carry, (jax.tree_util.tree_map(lambda v: v[None], m0), trace)
        carry, ms = jax.lax.scan(lambda c, _: step(c, a, False)[:2], carry, length=every - 1)
        metrics = jax.tree_util.tree_map(lambda u, v: jnp.concatenate([u[None], v]), m0, ms)
        return carry, (metrics, trace)

    def chunk(carry, a):
        test = evaluate(carry, a)
        carry, (metrics, trace) = jax.lax.scan(lambda c, _: block(c, a), carry, length=chunk_steps // every)
        metrics = jax.tree_util.tree_map(lambda v: v.reshape((chunk_steps,) + v.shape[2:]), metrics)
        nan = jnp.full((chunk_steps - 1,), jnp.nan, dtype)
        metrics["test_loss"], metrics["test_acc"] = (jnp.concatenate([t[None], nan]) for t in test)
        return carry, (metrics, trace)

    return chunk


class HostChunk:
    """A chunk stepped from the host, for a custom network: the same steps and outputs as
    `make_chunk`'s, each step its own call of a jitted program instead of a `lax.scan` body.
    XLA:CPU runs a convolution inside any loop, even of one trip, ~10x slower than outside one
    (1.8 against 21 steps/s for res20 on 8x8 digits; jax-ml/jax#12868, benchmarks/README.md),
    and a call costs well under a convolutional step. `lower` gives the programs to compile;
    `bind` the chunk that runs them."""

    def __init__(self, traced: Callable, plain: Callable, every: int, chunk_steps: int, dtype):
        self.traced, self.plain, self.every, self.chunk_steps, self.dtype = traced, plain, every, chunk_steps, dtype

    def lower(self, carry, a) -> list:
        return [self.traced.lower(carry, a), self.plain.lower(carry, a)]

    def bind(self, traced, plain) -> Callable:
        """chunk(carry, arrays, test) -> (carry, (metrics, trace)) with the compiled steps; test: the
        held-out loss and accuracy before the chunk's first step (as make_chunk's)."""
        every, n, dtype = self.every, self.chunk_steps, self.dtype

        def chunk(carry, a, test):
            metrics, traces = [], []
            for i in range(n):
                if i % every == 0:
                    carry, m, t = traced(carry, a)
                    traces.append(t)
                else:
                    carry, m = plain(carry, a)
                metrics.append(m)
            stack = lambda *v: jnp.stack(v)  # noqa: E731
            metrics = jax.tree_util.tree_map(stack, *metrics)  # [n] each (members: [n_members, n])
            axis = metrics["loss"].ndim - 1
            metrics = jax.tree_util.tree_map(lambda v: jnp.moveaxis(v, 0, axis), metrics)
            nan = jnp.full(test[0].shape + (n - 1,), jnp.nan, dtype)
            metrics["test_loss"], metrics["test_acc"] = (jnp.concatenate([t[..., None], nan], -1) for t in test)
            trace = jax.tree_util.tree_map(lambda *v: jnp.moveaxis(jnp.stack(v), 0, axis), *traces)
            return carry, (metrics, trace)

        return chunk


def make_train(cfg, problem: Problem | None = None, members: int = 1) -> Program:
    """The jitted programs of one job; with members > 1, of n jobs that differ only in
    vector keys (vgrun.config.hyper), vmapped: init takes keys [n] and hp values [n] each."""
    dtype = jnp.dtype(cfg.dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise RuntimeError("dtype=float64 needs float64 switched on first: vgrun.training.backend.use_dtype")
    problem = problem or make_problem(cfg, dtype)

    # a custom network reads no hyperparameter of vgrun's: built once (its factory runs, its taps are counted)
    custom = make_model(cfg, problem) if cfg.model.name == "custom" else None

    def build(hp):
        """Model and optimizer for these hyperparameter values (traced scalars): cheap closures."""
        c = hyper.with_values(cfg, hp)
        return custom or make_model(c, problem, cfg.diagnosis.sat_tol), optim.make(c.optimizer, cfg.steps)

    n_chunks = n_chunks_for(cfg.steps, cfg.trace_every, cfg.chunks)
    chunk_steps = cfg.steps // n_chunks

    def init(key, hp):
        hp = {k: jnp.asarray(v, dtype) for k, v in hp.items()}
        model, opt = build(hp)
        k_param, k_data = jax.random.split(key)
        params, state = model.init(k_param)
        return Carry(params, state, opt.init(params), k_data, jnp.zeros((), jnp.int32), hp)

    def evaluate(carry, a):
        model, _ = build(carry.hp)
        y_pred, _, _ = model.apply(carry.params, carry.state, a["x_test"], train=False)
        return problem.loss_and_acc(y_pred, a["y_test"])

    step = make_step(cfg, problem, build)
    chunk = make_chunk(step, evaluate, cfg.trace_every, chunk_steps, dtype)

    def train(key, hp, a):
        return jax.lax.scan(lambda c, _: chunk(c, a), init(key, hp), length=n_chunks)

    def lift(f, in_axes):  # members on a leading axis; the data arrays are shared
        return f if members == 1 else jax.vmap(f, in_axes=in_axes)

    init_jit = jax.jit(lift(init, 0))
    default_hp = hyper.values(cfg)
    histogram = make_histogram(cfg, problem, build)
    if custom is not None and custom.stepped:  # a convolution: stepped from the host (HostChunk)
        jitted = [jax.jit(lift(f, (0, None)), donate_argnums=0) for f in
                  (lambda c, a: step(c, a, True), lambda c, a: step(c, a, False)[:2])]
        run_chunk = HostChunk(*jitted, cfg.trace_every, chunk_steps, dtype)
    else:
        run_chunk = jax.jit(lift(chunk, (0, None)), donate_argnums=0)
    return Program(
        init=lambda key, hp=None: init_jit(key, default_hp if hp is None else hp),
        chunk=run_chunk,
        evaluate=jax.jit(lift(evaluate, (0, None))),
        train=jax.jit(lift(train, (0, 0, None))),
        problem=problem,
        n_chunks=n_chunks,
        chunk_steps=chunk_steps,
        members=members,
        init_jit=init_jit,
        histogram=None if histogram is None else jax.jit(lift(histogram, (0, None))),
    )


def make_histogram(cfg, problem: Problem, build) -> Callable | None:
    """histogram(carry, arrays) -> {"weight", "grad_w", "delta"}: [depth + 1, N_COUNTS] counts of
    log10 |W_l|, |dL/dW_l| and the per-example |dL_i/dz_l| (`vgrun.probes.histograms`), on the
    batch the carry's next training step draws: that step's own values, measured by one more
    forward and backward pass outside the training scan. None where histograms are off, or not
    yet measured (recurrent models; gradient-free optimizers have their own programs)."""
    if not cfg.histograms or is_recurrent(cfg):
        return None
    from vgrun.probes.histograms import N_COUNTS, log_histogram

    dtype, batch, depth = jnp.dtype(cfg.dtype), cfg.batch_size, cfg.depth

    def per_layer(tree):  # [depth + 1, N_COUNTS]
        return jnp.concatenate([log_histogram(tree["inp"]["w"], dtype)[None],
                                jax.vmap(lambda w: log_histogram(w, dtype))(tree["hid"]["w"]),
                                log_histogram(tree["out"]["w"], dtype)[None]])

    def histogram(carry, a):
        model, _ = build(carry.hp)
        x, y = problem.sample(jax.random.fold_in(carry.key, carry.step), a, batch)
        probes = {"hid": {"z": jnp.zeros((depth, N_COUNTS), dtype)}, "out": {"z": jnp.zeros((N_COUNTS,), dtype)}}

        def summed(params, probes):  # the sum over the batch: its cotangent at z is each example's own dL_i/dz_i
            y_pred, _, _ = model.apply(params, carry.state, x, probes, train=True, rolled=True)  # compiles faster
            return problem.loss_and_acc(y_pred, y)[0] * batch

        grads, delta = jax.grad(summed, (0, 1))(carry.params, probes)
        grads = jax.tree_util.tree_map(lambda g: g / batch, grads)  # dL/dW of the batch-mean loss
        return {"weight": per_layer(carry.params), "grad_w": per_layer(grads),
                "delta": jnp.concatenate([delta["hid"]["z"], delta["out"]["z"][None]])}

    return histogram


def make_step(cfg, problem: Problem, build) -> Callable:
    """step(carry, arrays, traced) -> (carry, metrics: dict of scalars, trace or None): one SGD step
    on a fresh batch; traced steps also take the per-layer (recurrent: per-time-step) trace.
    build(hp) -> (model, optimizer) for the carry's dynamic hyperparameters."""
    dtype = jnp.dtype(cfg.dtype)
    recurrent = is_recurrent(cfg)
    batch = cfg.batch_size
    clipping = cfg.optimizer.clip_norm is not None  # then the pre-clip norm is kept at every step

    def step(carry: Carry, a, traced: bool):
        model, opt = build(carry.hp)
        key = jax.random.fold_in(carry.key, carry.step)
        x, y = problem.sample(key, a, batch)

        def loss_fn(params, probes):
            y_pred, state, measured = model.apply(params, carry.state, x, probes, train=True, stats=traced)
            loss, acc = problem.loss_and_acc(y_pred, y)
            return loss, (acc, state, measured)

        # recurrent: one forward pass, one pull back of two streams, the loss and v^T h_{T-1} (vgrun.probes.time)
        if traced and recurrent:
            def forward(params, probes):
                loss, (acc, state, measured) = loss_fn(params, probes)
                return (loss, measured["h_last"]), (acc, state)

            (loss, h_last), pull, (acc, state) = jax.vjp(
                forward, carry.params, model.probes(), has_aux=True)
            v = temporal.unit_vectors(jax.random.fold_in(key, 1), h_last)
            grads, taps = pull((jnp.ones_like(loss), v))  # h_last is the shadow stream's: grads are the loss's
        elif traced:
            probes = model.probes()
            (loss, (acc, state, measured)), (grads, probe_grads) = jax.value_and_grad(
                loss_fn, argnums=(0, 1), has_aux=True
            )(carry.params, probes)
        else:
            (loss, (acc, state, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(carry.params, None)
        updates, opt_state = opt.update(grads, carry.opt_state, carry.params)
        params = optax.apply_updates(carry.params, updates)

        nan = jnp.asarray(jnp.nan, dtype)
        # before clipping; underflow-safe, so only where needed (it costs a pass over the grads)
        metrics = {"loss": loss, "acc": acc, "grad_norm": global_norm(grads) if clipping else nan}
        trace = None
        if traced and recurrent:
            trace = temporal.trace_step(carry.params, grads, taps, updates, batch)
            metrics["grad_norm"] = global_norm(grads)
        elif traced and model.trace is not None:  # a custom model (vgrun.nn.custom)
            trace = model.trace(grads, probe_grads, carry.params, updates, measured, batch)
            metrics["grad_norm"] = global_norm(grads)
        elif traced:
            trace = trace_step(grads, probe_grads, carry.params, updates, measured, batch,
                               gradient_multiple(carry, grads, updates))
            metrics["grad_norm"] = trace_global_norm(grads, trace)
        return carry._replace(params=params, state=state, opt_state=opt_state, step=carry.step + 1), metrics, trace

    def gradient_multiple(carry, grads, updates):
        """grad_w -> |W_l(t+1) - W_l(t)| [depth + 1] with no pass over the updates, when each one is
        c times the gradient (optim.scales_gradient): c * |dL/dW_l|, c from the output layer. Where
        c is undefined (the output layer's gradient 0, or its update not finite) the update is taken
        again and measured layer by layer. None for other optimizers: trace_step measures them.
        (Cheaper than a pass over the updates: benchmarks/README.md.)"""
        if not optim.scales_gradient(cfg.optimizer):
            return None
        c = global_norm(updates["out"]) / global_norm(grads["out"])

        def measured(c, grad_w, hp, grads, opt_state, params):
            return layer_norms(build(hp)[1].update(grads, opt_state, params)[0], "w")

        return lambda grad_w: cond_all(jnp.isfinite(c), lambda c, grad_w, *_: c * grad_w, measured,
                                       c, grad_w, carry.hp, grads, carry.opt_state, carry.params)

    return step
