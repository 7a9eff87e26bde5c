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
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

import numpy as np

import jax
import jax.numpy as jnp
import optax

from vgrun import hyper, models, optim, temporal
from vgrun.cores import lowest_priority
from vgrun.models import rnn
from vgrun.names import GRADIENT_FREE, RECURRENT
from vgrun.problem import Problem
from vgrun.problem import make as make_problem
from vgrun.traces import Trace, cond_all, global_norm, layer_norms, trace_global_norm, trace_step



class Carry(NamedTuple):
    params: dict
    state: dict  # batchnorm running statistics
    opt_state: tuple
    key: jax.Array  # batch-sampling key; step i uses fold_in(key, i)
    step: jax.Array
    hp: dict  # dynamic hyperparameters (vgrun.hyper): dotted key -> scalar, read inside the program


class Program(NamedTuple):
    init: Callable  # (key, hp) -> Carry
    chunk: Callable  # (Carry, arrays) -> (Carry, (metrics: dict of [S], trace: of [S / trace_every, ...]))
    #                  recurrent: trace = (TimeTrace, W_rec), completed on the host by temporal.finish
    evaluate: Callable  # (Carry, arrays) -> (held-out loss, held-out accuracy)
    train: Callable  # (key, hp, arrays) -> (Carry, outputs stacked over chunks)
    problem: Problem
    n_chunks: int
    chunk_steps: int
    members: int  # 1: plain functions; n > 1: vmapped over a leading axis of n members (key, hp, Carry)
    init_jit: Callable  # (key, hp) -> Carry, jitted, hp required (`init` fills in the config's)


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


def make_train(cfg, problem: Problem | None = None, members: int = 1) -> Program:
    """The jitted programs of one job; with members > 1, of n jobs that differ only in
    vector keys (vgrun.hyper), vmapped: init takes keys [n] and hp values [n] each."""
    dtype = jnp.dtype(cfg.dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    problem = problem or make_problem(cfg, dtype)
    recurrent = is_recurrent(cfg)

    def build(hp):
        """Model and optimizer for these hyperparameter values (traced scalars): cheap closures."""
        c = hyper.with_values(cfg, hp)
        if recurrent:
            model = rnn.make(c, problem.n_in, problem.n_out, dtype, problem.n_out_steps)
        else:
            model = models.MODELS[cfg.model.name].make(c, problem.n_in, problem.n_out, dtype)
        return model, optim.make(c.optimizer, cfg.steps)

    batch, every = cfg.batch_size, cfg.trace_every
    n_chunks = n_chunks_for(cfg.steps, every, cfg.chunks)
    chunk_steps = cfg.steps // n_chunks
    clipping = cfg.optimizer.clip_norm is not None  # then the pre-clip norm is kept at every step

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

    def step(carry: Carry, a, traced: bool):
        model, opt = build(carry.hp)
        key = jax.random.fold_in(carry.key, carry.step)
        x, y = problem.sample(key, a, batch)

        def loss_fn(params, probes):
            y_pred, state, stats = model.apply(params, carry.state, x, probes, train=True, stats=traced)
            loss, acc = problem.loss_and_acc(y_pred, y)
            return loss, (acc, state, stats)

        if traced and recurrent:  # one forward pass, one pull back of two streams: the loss, and v^T h_{T-1} (vgrun.temporal)
            def forward(params, probes):
                loss, (acc, state, h_last) = loss_fn(params, probes)
                return (loss, h_last), (acc, state)

            (loss, h_last), pull, (acc, state) = jax.vjp(
                forward, carry.params, model.probes(problem.seq_steps), has_aux=True)
            v = temporal.unit_vectors(jax.random.fold_in(key, 1), h_last)
            grads, taps = pull((jnp.ones_like(loss), v))  # h_last is the shadow stream's: grads are the loss's
        elif traced:
            probes = model.probes()
            (loss, (acc, state, stats)), (grads, probe_grads) = jax.value_and_grad(
                loss_fn, argnums=(0, 1), has_aux=True
            )(carry.params, probes)
        else:
            (loss, (acc, state, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(carry.params, None)
        updates, opt_state = opt.update(grads, carry.opt_state, carry.params)
        params = optax.apply_updates(carry.params, updates)

        nan = jnp.asarray(jnp.nan, dtype)
        # before clipping; underflow-safe, so only where needed (it costs a pass over the grads)
        metrics = {"loss": loss, "acc": acc, "grad_norm": global_norm(grads) if clipping else nan}
        trace = None
        if traced and recurrent:
            trace = temporal.trace_step(carry.params, grads, taps, updates, batch)
            metrics["grad_norm"] = global_norm(grads)
        elif traced:
            trace = trace_step(grads, probe_grads, carry.params, updates, stats, batch,
                               gradient_multiple(carry, grads, updates))
            metrics["grad_norm"] = trace_global_norm(grads, trace)
        return carry._replace(params=params, state=state, opt_state=opt_state, step=carry.step + 1), metrics, trace

    def gradient_multiple(carry, grads, updates):
        """grad_w -> |W_l(t+1) - W_l(t)| [depth + 1] with no pass over the updates, when each one is
        c times the gradient (optim.scales_gradient): c * |dL/dW_l|, c from the output layer. Where
        c is undefined (the output layer's gradient 0, or its update not finite) the update is taken
        again and measured layer by layer. None for other optimizers: trace_step measures them.
        Measured (benchmarks/bench_traces.py, sigmoid, one core), traced step, untraced ~0.90 / 2.0 /
        6.0 ms: depth 10 1.14 -> 1.10 ms, depth 20 2.47 -> 2.35 ms, depth 50 7.29 -> 6.72 ms."""
        if not optim.scales_gradient(cfg.optimizer):
            return None
        c = global_norm(updates["out"]) / global_norm(grads["out"])

        def measured(c, grad_w, hp, grads, opt_state, params):
            return layer_norms(build(hp)[1].update(grads, opt_state, params)[0], "w")

        return lambda grad_w: cond_all(jnp.isfinite(c), lambda c, grad_w, *_: c * grad_w, measured,
                                       c, grad_w, carry.hp, grads, carry.opt_state, carry.params)

    chunk = make_chunk(step, evaluate, every, chunk_steps, dtype)

    def train(key, hp, a):
        return jax.lax.scan(lambda c, _: chunk(c, a), init(key, hp), length=n_chunks)

    def lift(f, in_axes):  # members on a leading axis; the data arrays are shared
        return f if members == 1 else jax.vmap(f, in_axes=in_axes)

    init_jit = jax.jit(lift(init, 0))
    default_hp = hyper.values(cfg)
    return Program(
        init=lambda key, hp=None: init_jit(key, default_hp if hp is None else hp),
        chunk=jax.jit(lift(chunk, (0, None)), donate_argnums=0),
        evaluate=jax.jit(lift(evaluate, (0, None))),
        train=jax.jit(lift(train, (0, 0, None))),
        problem=problem,
        n_chunks=n_chunks,
        chunk_steps=chunk_steps,
        members=members,
        init_jit=init_jit,
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
    pretrain: object = None  # pretrain.PretrainLog when pretrain != none


def run(cfg, problem: Problem | None = None, key=None, on_chunk=None, should_stop=lambda: False) -> Result:
    """Train one job chunk by chunk on the host (see run_members)."""
    keys = None if key is None else [key]
    return run_members(cfg, [hyper.values(cfg)], problem, keys, on_chunk, should_stop)[0]


def compile_side_by_side(prog: Program, key, hp) -> list:
    """[init, chunk, evaluate] compiled side by side on the process's cores, longest first, and
    once across the processes that share the compilation cache (vgrun/compiling.py: two
    pinned sweep workers no longer both compile the same chunk). The chunk is lowered from
    the carry's shapes (no init run)."""
    from vgrun.compiling import compile_all

    shapes = jax.eval_shape(prog.init_jit, key, hp)
    d = prog.problem.arrays
    chunk, init, evaluate = compile_all(  # longest first
        [prog.chunk.lower(shapes, d), prog.init_jit.lower(key, hp), prog.evaluate.lower(shapes, d)])
    return [init, chunk, evaluate]


_PROGRAMS: dict = {}  # (static signature, members, x64) -> (Program, [compiled init, chunk, evaluate])
_KEEP = 4  # programs kept per process (the most recent)


def _program(cfg, problem: Problem | None, n: int):
    """The Program of these jobs and its compiled [init, chunk, evaluate] (empty list: not yet).

    Jobs of one process that share a static signature (vgrun.hyper: they differ only in
    seeds, learning rates, init scales, ...) share one program: a sweep's later jobs skip
    tracing, lowering and loading from the compilation cache (~0.4 s a job at depth 10).
    A caller's own `problem` is not cached."""
    if problem is not None:
        return make_train(cfg, problem, members=n), []
    if cfg.dtype == "float64" and not jax.config.jax_enable_x64:  # as make_train would, before the key
        jax.config.update("jax_enable_x64", True)
    key = (hyper.signature(cfg), n, bool(jax.config.jax_enable_x64))
    if key not in _PROGRAMS:
        if len(_PROGRAMS) >= _KEEP:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = (make_train(cfg, members=n), [])
    return _PROGRAMS[key]


def run_members(cfg, hps: list[dict], problem: Problem | None = None, keys=None, on_chunk=None,
                should_stop=lambda: False) -> list[Result]:
    """Train n jobs that differ only in vector keys as one program (vmapped when n > 1).

    hps[i]: member i's dynamic values (vgrun.hyper.values); keys[i]: its PRNG key
    (default PRNGKey(cfg.seed + i)). Each member ends on its own status, exactly as if it
    had run alone: completed; diverged (a non-finite loss or gradient norm: its record
    stops after that chunk, everything measured is kept, and its held-out metrics are
    taken there; the others go on); interrupted (should_stop() became true; the chunk
    in flight finishes first). compile_s and train_s are the group's.
    """
    n, expected = len(hps), set(hyper.values(cfg))
    for hp in hps:  # the set keys select code paths (vgrun.hyper.signature): one program for all
        if set(hp) != expected:
            raise ValueError(f"members set different keys: {sorted(set(hp) ^ expected)}")
    keys = [jax.random.PRNGKey(cfg.seed + i) for i in range(n)] if keys is None else keys
    if cfg.optimizer.name in GRADIENT_FREE:  # no backprop (vgrun/evolve.py): members one after another
        from vgrun import evolve

        return [evolve.run(hyper.with_values(cfg, hp), problem, k, on_chunk, should_stop) for hp, k in zip(hps, keys)]
    t0 = time.perf_counter()
    prog, compiled = _program(cfg, problem, n)
    every, d = cfg.trace_every, prog.problem.arrays
    key, hp = (keys[0], hps[0]) if n == 1 else (jnp.stack(keys), {k: np.array([h[k] for h in hps]) for k in hps[0]})
    if not compiled:  # compiled here, so train_s is training only
        compiled += compile_side_by_side(prog, key, hp)
    init, chunk, evaluate = compiled
    carry = init(key, hp)
    pretrained = [None] * n
    if cfg.pretrain.name != "none":  # greedy layer-wise pretraining of carry.params (vgrun/pretrain.py)
        from vgrun import pretrain

        carry, pretrained = pretrain.apply_members(cfg, prog.problem, carry, n)
        t0 += sum(log.seconds for log in pretrained)  # compile_s counts compilation only
    compile_s = time.perf_counter() - t0

    def member(tree, i):
        return tree if n == 1 else jax.tree_util.tree_map(lambda v: v[i], tree)

    # recurrent: the spectra of W_rec are computed on the host, beside the next chunk (temporal.finish),
    # at the lowest priority: at threads=2 XLA runs on both cores, and a host eig at normal priority
    # stalled it (tanh RNN, H=128: 20.6 ms per traced step, 23.9 with the spectra, ~76 ms a chunk)
    spectra = ThreadPoolExecutor(1, initializer=lowest_priority) if is_recurrent(cfg) else None
    metrics, traces = [], []
    status, ends, tests, carries = ["completed"] * n, [prog.n_chunks] * n, [None] * n, [None] * n
    for c in range(prog.n_chunks):
        carry, (m, t) = chunk(carry, d)
        m, t = jax.device_get((m, t))
        metrics.append(m)
        traces.append(spectra.submit(temporal.finish, t) if spectra else t)
        live = [i for i in range(n) if tests[i] is None]
        if on_chunk is not None:
            on_chunk(c + 1, prog, member(m, live[0]))
        bad = [i for i in live if not (np.isfinite(member(m, i)["loss"]).all()
                                       and np.isfinite(member(m, i)["grad_norm"][::every]).all())]
        stop = should_stop() and c + 1 < prog.n_chunks
        if bad or stop or c + 1 == prog.n_chunks:  # members that end here: their held-out metrics and carry
            test, host = jax.device_get((evaluate(carry, d), carry))  # on the host: no slicing programs to compile
            for i in bad if not stop else live:
                status[i] = "diverged" if i in bad else "interrupted"
            for i in (live if stop or c + 1 == prog.n_chunks else bad):
                ends[i], tests[i] = c + 1, tuple(float(v) for v in member(test, i))
                carries[i] = member(host, i)
        if stop or all(t is not None for t in tests):
            break
    if spectra:
        traces = [t.result() for t in traces]
        spectra.shutdown()
    train_s = time.perf_counter() - t0 - compile_s

    def result(i):
        ms = [member(m, i) for m in metrics[: ends[i]]]
        ts = [member(t, i) for t in traces[: ends[i]]]
        cat_m = {k: np.concatenate([m[k] for m in ms]) for k in ms[0]}
        cat_t = type(ts[0])(*(np.concatenate([getattr(t, f) for t in ts]) for f in ts[0]._fields))
        return Result(prog.problem, carries[i], cat_m, cat_t, status[i], compile_s, train_s, tests[i],
                      pretrained[i])

    return [result(i) for i in range(n)]
