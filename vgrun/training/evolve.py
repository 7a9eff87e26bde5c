"""Gradient-free training: a population of networks, evaluated as one vmapped program.

    optimizer=ga          simple genetic algorithm: truncation selection (top half) and Gaussian
                          mutation of std `optimizer.sigma`, no crossover (Such et al. 2017's deep GA)
    optimizer=openai_es   OpenAI-ES (Salimans et al. 2017): antithetic Gaussian perturbations of
                          std sigma, centred-rank fitness shaping, Adam on the mean with `optimizer.lr`
    optimizer=sep_cma_es  separable CMA-ES (Ros & Hansen 2008): CMA-ES with a diagonal covariance,
                          O(n) memory, so it scales to networks of 10^5 weights
    optimizer=cma_es      full CMA-ES (Hansen & Ostermeier 2001): an n x n covariance, so only for
                          networks of at most MAX_CMA_DIMS parameters

The strategies are evosax's (Lange 2022, `evosax.algorithms`), not ours. One step of
the run is one generation: ask for `optimizer.popsize` parameter vectors, evaluate the
training loss of each on the step's minibatch (the same minibatches a backprop run of
the same seed sees) with one vmapped forward pass, tell the strategy. The update never
differentiates anything (tests/test_evolve.py checks its jaxpr).

The current solution is the search distribution's mean (ES) or the best member of the
last generation (ga). Its metrics are those of a backprop run (loss, accuracy, held-out
metrics) and, at traced steps, the supervised gradient it *would* get (`vgrun.probes.supervised`):
the trace shows |delta_l| vanishing with depth while the search still makes progress.
It runs in the one host loop (`vgrun.training.loop`), so the run folder, diagnosis and plots are the usual ones.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from vgrun.nn import make_model
from vgrun.training import optim
from vgrun.config.schema import ConfigError
from vgrun.probes.supervised import supervised_trace
from vgrun.data.problem import make as make_problem
from vgrun.training.program import make_chunk, n_chunks_for

MAX_CMA_DIMS = 2000  # full CMA-ES keeps an n x n covariance and decomposes it: n^2 memory, n^3 time


def _ga(ocfg, solution, steps):
    from evosax.algorithms import SimpleGA

    return SimpleGA(ocfg.popsize, solution, std_schedule=optax.constant_schedule(ocfg.sigma))


def _openai_es(ocfg, solution, steps):
    from evosax.algorithms import Open_ES

    return Open_ES(ocfg.popsize, solution, optimizer=optax.adam(optim.schedule(ocfg, steps)),
                   std_schedule=optax.constant_schedule(ocfg.sigma))


def _sep_cma_es(ocfg, solution, steps):
    from evosax.algorithms import Sep_CMA_ES

    return Sep_CMA_ES(ocfg.popsize, solution)


def _cma_es(ocfg, solution, steps):
    from evosax.algorithms import CMA_ES

    return CMA_ES(ocfg.popsize, solution)


ALGORITHMS = {"ga": _ga, "openai_es": _openai_es, "sep_cma_es": _sep_cma_es, "cma_es": _cma_es}
POPULATION_BASED = ("ga",)  # the others are distribution-based: their current solution is the mean


def strategy(ocfg, solution, steps: int):
    """(evosax algorithm, its params) for `ocfg.name`, over parameter trees shaped like `solution`."""
    n = sum(v.size for v in jax.tree_util.tree_leaves(solution))
    if ocfg.name == "cma_es" and n > MAX_CMA_DIMS:
        raise ConfigError("optimizer", "cma_es", f"sep_cma_es or ga, openai_es: this network has {n} parameters "
                          f"and full CMA-ES holds an {n} x {n} covariance (at most {MAX_CMA_DIMS} parameters)")
    if ocfg.name == "openai_es" and ocfg.popsize % 2:
        raise ConfigError("optimizer.popsize", ocfg.popsize, "an even number for openai_es (antithetic pairs)")
    es = ALGORITHMS[ocfg.name](ocfg, solution, steps)
    params = es.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=jnp.asarray(ocfg.sigma, jnp.float32))
    return es, params


class EvoCarry(NamedTuple):
    params: dict  # the current solution (mean or best member)
    state: dict  # batchnorm running statistics, from forward passes of the current solution
    es_state: object  # the strategy's state (evosax)
    key: jax.Array  # batch key: generation i uses fold_in(key, i), as backprop's step i does
    step: jax.Array


class EvoProgram(NamedTuple):
    init: object  # key -> EvoCarry
    generation: object  # (EvoCarry, arrays) -> (EvoCarry, metrics): one untraced generation
    chunk: object  # (EvoCarry, arrays) -> (EvoCarry, (metrics of [S], Trace of [S / trace_every, L]))
    evaluate: object  # (EvoCarry, arrays) -> (held-out loss, held-out accuracy)
    problem: object
    n_chunks: int
    chunk_steps: int
    n_params: int


def make(cfg, problem=None) -> EvoProgram:
    dtype = jnp.dtype(cfg.dtype)
    problem = problem or make_problem(cfg, dtype)
    model = make_model(cfg, problem, cfg.diagnosis.sat_tol)
    template = model.init(jax.random.PRNGKey(0))[0]
    es, es_params = strategy(cfg.optimizer, template, cfg.steps)
    population_based = cfg.optimizer.name in POPULATION_BASED
    batch, every, popsize = cfg.batch_size, cfg.trace_every, cfg.optimizer.popsize
    n_chunks = n_chunks_for(cfg.steps, every, cfg.chunks)
    chunk_steps = cfg.steps // n_chunks
    worst = jnp.finfo(jnp.float32).max  # a non-finite fitness ranks last instead of poisoning the ranks

    def forward(params, state, x, y):
        y_pred, state, _ = model.apply(params, state, x, None, train=True)
        loss, acc = problem.loss_and_acc(y_pred, y)
        return loss, acc, state

    def init(key):
        k_param, k_data = jax.random.split(key)  # as train.init: the same seed starts from the same network
        params, state = model.init(k_param)
        k_es = jax.random.fold_in(k_param, 1)
        if population_based:  # independent initialisations, member 0 the backprop run's network
            pop = jax.vmap(lambda k: model.init(k)[0])(jax.random.split(k_es, popsize))
            pop = jax.tree_util.tree_map(lambda p, v: p.at[0].set(v), pop, params)
            es_state = es.init(k_es, pop, jnp.full((popsize,), worst), es_params)
        else:
            es_state = es.init(k_es, params, es_params)
        return EvoCarry(params, state, es_state, k_data, jnp.zeros((), jnp.int32))

    def generation(carry: EvoCarry, a):
        """One generation (no derivative of anything): the current solution's loss on the
        step's batch, then ask, evaluate the population (vmapped), tell."""
        key = jax.random.fold_in(carry.key, carry.step)
        x, y = problem.sample(key, a, batch)
        loss, acc, state = forward(carry.params, carry.state, x, y)
        pop, es_state = es.ask(jax.random.fold_in(key, 1), carry.es_state, es_params)
        pop = jax.tree_util.tree_map(lambda v: v.astype(dtype), pop)
        fitness = jax.vmap(lambda p: forward(p, carry.state, x, y)[0])(pop)  # [popsize]
        fitness = jnp.where(jnp.isfinite(fitness), fitness, worst).astype(jnp.float32)
        es_state, _ = es.tell(jax.random.fold_in(key, 2), pop, fitness, es_state, es_params)
        # with float64 enabled globally some strategies promote their state; keep the carry's types
        es_state = jax.tree_util.tree_map(lambda v, t: jnp.asarray(v, jnp.result_type(t)), es_state, carry.es_state)
        if population_based:
            best = jnp.argmin(fitness)
            params = jax.tree_util.tree_map(lambda v: v[best], pop)
        else:
            params = jax.tree_util.tree_map(lambda v, t: v.astype(t.dtype), es.get_mean(es_state), carry.params)
        metrics = {"loss": loss, "acc": acc, "pop_best": jnp.min(fitness).astype(dtype)}
        return EvoCarry(params, state, es_state, carry.key, carry.step + 1), metrics

    def step(carry, a, traced: bool):
        new, metrics = generation(carry, a)
        metrics["grad_norm"] = jnp.asarray(jnp.nan, dtype)
        trace = None
        if traced:  # the gradient the current solution would get: measured, never used
            x, y = problem.sample(jax.random.fold_in(carry.key, carry.step), a, batch)
            updates = jax.tree_util.tree_map(jnp.subtract, new.params, carry.params)
            _, _, trace, metrics["grad_norm"] = supervised_trace(model, problem, carry.params, carry.state, x, y,
                                                                 updates, batch)
        return new, metrics, trace

    def evaluate(carry, a):
        y_pred, _, _ = model.apply(carry.params, carry.state, a["x_test"], train=False)
        return problem.loss_and_acc(y_pred, a["y_test"])

    chunk = make_chunk(step, evaluate, every, chunk_steps, dtype)

    return EvoProgram(jax.jit(init), jax.jit(generation), jax.jit(chunk, donate_argnums=0), jax.jit(evaluate),
                      problem, n_chunks, chunk_steps, es.num_dims)
