"""The one host loop: train a Program chunk by chunk, members side by side.

Backprop programs (`vgrun.training.program`) and gradient-free ones
(`vgrun.training.evolve`) both run here: the host pulls each chunk's metrics and
traces off the device, stops a member that diverged, honours a stop request between
chunks, and returns one `Result` per member.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

import jax
import jax.numpy as jnp

from vgrun.config import hyper
from vgrun.config.names import GRADIENT_FREE
from vgrun.data.problem import Problem
from vgrun.probes import time as temporal
from vgrun.probes.layers import Trace
from vgrun.training.cache import ProgramCache
from vgrun.training.cores import lowest_priority
from vgrun.training.backend import use_dtype
from vgrun.training.program import Carry, HostChunk, Program, is_recurrent, make_train


class Result(NamedTuple):
    problem: Problem
    carry: Carry
    metrics: dict  # name -> [steps_done] numpy
    traces: Trace  # Trace (feed-forward: fields [traced steps, L]) or TimeTrace, numpy
    status: str  # completed | diverged | interrupted
    compile_s: float  # init + compiling the chunk program
    train_s: float  # the training loop after compilation
    test: tuple  # final (held-out loss, held-out accuracy)
    pretrain: object = None  # vgrun.training.pretrain.PretrainLog when pretrain != none
    histograms: dict | None = None  # "step" [K]; "weight", "grad_w", "delta" [K, layers, N_COUNTS] (Program.histogram)


def run(cfg, problem: Problem | None = None, key=None, on_chunk=None, should_stop=lambda: False,
        cache: ProgramCache | None = None) -> Result:
    """Train one job chunk by chunk on the host (see run_members)."""
    keys = None if key is None else [key]
    return run_members(cfg, [hyper.values(cfg)], problem, keys, on_chunk, should_stop, cache)[0]


def compile_side_by_side(prog: Program, key, hp) -> list:
    """[init, chunk, evaluate, histogram or None] compiled side by side on the process's cores, longest first, and
    once across the processes that share the compilation cache (vgrun.training.compiling: two
    pinned sweep workers do not both compile the same chunk). The chunk is lowered from
    the carry's shapes (no init run). (Compiling the histogram program on a thread of its own
    while training ran was tried: on this 2-core machine it slowed the training by more than
    the compilation takes; benchmarks/README.md.)"""
    from vgrun.training.compiling import compile_all

    shapes = jax.eval_shape(prog.init_jit, key, hp)
    d = prog.problem.arrays
    stepped = isinstance(prog.chunk, HostChunk)
    chunk = prog.chunk.lower(shapes, d) if stepped else [prog.chunk.lower(shapes, d)]
    lowered = [*chunk, prog.init_jit.lower(key, hp), prog.evaluate.lower(shapes, d)]
    if prog.histogram is not None:
        lowered.append(prog.histogram.lower(shapes, d))
    done = compile_all(lowered)  # longest first
    chunk, (init, evaluate, *histogram) = done[: len(chunk)], done[len(chunk):]
    if stepped:  # the held-out evaluation before each chunk, as the scanned chunk's own
        steps = prog.chunk.bind(*chunk)
        chunk = [lambda carry, a: steps(carry, a, evaluate(carry, a))]
    return [init, chunk[0], evaluate, histogram[0] if histogram else None]


def run_members(cfg, hps: list[dict], problem: Problem | None = None, keys=None, on_chunk=None,
                should_stop=lambda: False, cache: ProgramCache | None = None, record=None,
                start=None) -> list[Result]:
    """Train n jobs that differ only in vector keys as one program (vmapped when n > 1).

    hps[i]: member i's dynamic values (vgrun.config.hyper.values); keys[i]: its PRNG key
    (default PRNGKey(cfg.seed + i)). Each member ends on its own status, exactly as if it
    had run alone: completed; diverged (a non-finite loss or gradient norm: its record
    stops after that chunk, everything measured is kept, and its held-out metrics are
    taken there; the others go on); interrupted (should_stop() became true; the chunk
    in flight finishes first). compile_s and train_s are the group's. cache: where the
    compiled program is looked up and kept (None: compiled for this call alone); a
    caller's own `problem` is never cached. float64 is switched on or off for cfg.dtype.
    Gradient-free optimizers (`vgrun.training.evolve`) run their members one after another.
    record: streams each chunk as it finishes (`vgrun.io.stream.Stream`: its start and chunk
    methods); start: what an earlier run of the same job streamed (`vgrun.io.stream.Partial`):
    training goes on from its last chunk, bit-identical to a run never stopped.
    """
    n, expected = len(hps), set(hyper.values(cfg))
    for hp in hps:  # the set keys select code paths (vgrun.config.hyper.signature): one program for all
        if set(hp) != expected:
            raise ValueError(f"members set different keys: {sorted(set(hp) ^ expected)}")
    keys = [jax.random.PRNGKey(cfg.seed + i) for i in range(n)] if keys is None else keys
    use_dtype(cfg.dtype)
    if cfg.optimizer.name in GRADIENT_FREE:
        if start is not None:
            raise ValueError(f"resume continues backpropagation runs, not optimizer={cfg.optimizer.name}")
        return [_evolve(hyper.with_values(cfg, hp), problem, k, on_chunk, should_stop) for hp, k in zip(hps, keys)]
    t0 = time.perf_counter()
    if problem is not None:
        prog, compiled = make_train(cfg, problem, members=n), []
    else:
        prog, compiled = (cache if cache is not None else ProgramCache(keep=0)).get(cfg, n)
    key, hp = (keys[0], hps[0]) if n == 1 else (jnp.stack(keys), {k: np.array([h[k] for h in hps]) for k in hps[0]})
    if not compiled:  # compiled here, so train_s is training only
        compiled += compile_side_by_side(prog, key, hp)
    init, chunk, evaluate, histogram = compiled
    pretrained = [None] * n
    if start is not None:  # the state the earlier run streamed after its last chunk, on the device
        shapes = jax.eval_shape(prog.init_jit, key, hp)
        treedef = jax.tree_util.tree_structure(shapes)
        carry = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v, s.dtype) for v, s in
                                                       zip(start.leaves, jax.tree_util.tree_leaves(shapes))])
    else:
        carry = init(key, hp)
    if cfg.pretrain.name != "none" and start is None:  # greedy layer-wise pretraining of carry.params (vgrun.training.pretrain)
        from vgrun.training import pretrain

        carry, pretrained = pretrain.apply_members(cfg, prog.problem, carry, n)
        t0 += sum(log.seconds for log in pretrained)  # compile_s counts compilation only
    compile_s = time.perf_counter() - t0
    return drive(prog, chunk, evaluate, carry, n, ("loss", "grad_norm"), cfg.trace_every, is_recurrent(cfg),
                 on_chunk, should_stop, t0, compile_s, pretrained, histogram, record, start)


def _evolve(cfg, problem, key, on_chunk, should_stop) -> Result:
    """One gradient-free run (`vgrun.training.evolve`): diverged when the current solution's loss is not finite."""
    from vgrun.training import evolve

    prog = evolve.make(cfg, problem)
    d = prog.problem.arrays
    t0 = time.perf_counter()
    carry = prog.init(key)
    chunk, evaluate = prog.chunk.lower(carry, d).compile(), prog.evaluate.lower(carry, d).compile()
    return drive(prog, chunk, evaluate, carry, 1, ("loss",), cfg.trace_every, False, on_chunk, should_stop,
                 t0, time.perf_counter() - t0, [None])[0]


def drive(prog, chunk, evaluate, carry, n: int, watch: tuple, every: int, recurrent: bool, on_chunk, should_stop,
          t0: float, compile_s: float, pretrained: list, histogram=None, record=None, start=None) -> list[Result]:
    """The host loop: run `chunk` prog.n_chunks times on `carry` (n members on a leading axis
    when n > 1), pull each chunk's metrics and traces to the host, end a member whose `watch`
    metrics went non-finite (grad_norm: at traced steps, every `every`), stop between chunks
    when should_stop(); one Result per member. histogram: taken at step 0 and after every chunk.
    record: given each chunk as it finishes, with a host copy of the carry (see run_members);
    start: the chunks an earlier run finished, and its members' ends (the carry is already its)."""
    d = prog.problem.arrays

    def member(tree, i):
        return tree if n == 1 else jax.tree_util.tree_map(lambda v: v[i], tree)

    def finite(m) -> bool:
        return all(np.isfinite(m[k][::every] if k == "grad_norm" else m[k]).all() for k in watch)

    # recurrent: the spectra of W_rec are computed on the host, beside the next chunk (vgrun.probes.time.finish),
    # at the lowest priority: a host eig at normal priority stalled XLA's threads
    spectra = ThreadPoolExecutor(1, initializer=lowest_priority) if recurrent else None
    status, ends, tests, carries = ["completed"] * n, [prog.n_chunks] * n, [None] * n, [None] * n
    # histograms on their own thread, of a copy of the carry (the next chunk donates it): the training
    # never waits for the histogram program's compilation or its passes
    snapshots = ThreadPoolExecutor(1, thread_name_prefix="vgrun-histograms") if histogram is not None else None

    def snapshot(carry):
        copy = jax.tree_util.tree_map(jnp.copy, carry)
        return snapshots.submit(lambda: jax.device_get(histogram(copy, d)))

    if start is None:
        metrics, traces = [], []
        hists = [] if histogram is None else [snapshot(carry)]  # step 0
        if record is not None:
            record.start(hists[0] if hists else None)
    else:
        metrics, traces, hists = list(start.metrics), list(start.traces), list(start.hists if histogram else [])
        status, ends, tests = list(start.status), list(start.ends), list(start.tests)
        for i in range(n):  # a member the earlier run interrupted goes on
            if status[i] == "interrupted":
                status[i], ends[i], tests[i] = "completed", prog.n_chunks, None
    for c in range(0 if start is None else start.chunks_done, prog.n_chunks):
        carry, (m, t) = chunk(carry, d)
        if histogram is not None:
            hists.append(snapshot(carry))
        m, t = jax.device_get((m, t))
        metrics.append(m)
        traces.append(spectra.submit(temporal.finish, t) if spectra else t)
        live = [i for i in range(n) if tests[i] is None]
        if on_chunk is not None:
            on_chunk(c + 1, prog, member(m, live[0]))
        bad = [i for i in live if not finite(member(m, i))]
        stop = should_stop() and c + 1 < prog.n_chunks
        if bad or stop or c + 1 == prog.n_chunks:  # members that end here: their held-out metrics and carry
            test, host = jax.device_get((evaluate(carry, d), carry))  # on the host: no slicing programs to compile
            for i in bad if not stop else live:
                status[i] = "diverged" if i in bad else "interrupted"
            for i in (live if stop or c + 1 == prog.n_chunks else bad):
                ends[i], tests[i] = c + 1, tuple(float(v) for v in member(test, i))
                carries[i] = member(host, i)
        if record is not None:  # the state as a copy: the next chunk donates the carry's buffers
            last = stop or c + 1 == prog.n_chunks or all(t is not None for t in tests)
            leaves = ([np.array(v, copy=True) for v in jax.device_get(jax.tree_util.tree_leaves(carry))]
                      if record.wants_state(last) else None)
            record.chunk(c, m, traces[-1], hists[-1] if hists else None, leaves, ends, status, tests)
        if stop or all(t is not None for t in tests):
            break
    if spectra:
        traces = [t.result() if hasattr(t, "result") else t for t in traces]
        spectra.shutdown()
    hists = [h.result() if hasattr(h, "result") else h for h in hists]
    if snapshots is not None:
        snapshots.shutdown()
    train_s = time.perf_counter() - t0 - compile_s

    def result(i):
        ms = [member(m, i) for m in metrics[: ends[i]]]
        ts = [member(t, i) for t in traces[: ends[i]]]
        cat_m = {k: np.concatenate([m[k] for m in ms]) for k in ms[0]}
        cat_t = type(ts[0])(*(np.concatenate([getattr(t, f) for t in ts]) for f in ts[0]._fields))
        hist = None
        if hists:  # step 0 and the end of each chunk the member ran
            hs = [member(h, i) for h in hists[: ends[i] + 1]]
            hist = {"step": np.arange(len(hs)) * prog.chunk_steps, **{q: np.stack([h[q] for h in hs]) for q in hs[0]}}
        return Result(prog.problem, carries[i], cat_m, cat_t, status[i], compile_s, train_s, tests[i],
                      pretrained[i], hist)

    return [result(i) for i in range(n)]
