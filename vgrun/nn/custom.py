"""A researcher's own network as a vgrun Model: `model=custom model.target=PKG.MODULE:FACTORY`.

FACTORY(n_in, n_out, key) returns one of (n_in: the input size; for images and sequences, one
example's shape: (H, W, C), (T, features))
- an `(init, apply)` pair: init(key) -> params (or the params themselves), apply(params, x) -> y;
- a Flax NNX module (its nnx.Param leaves are trained; batch statistics and other state are carried);
- an Equinox module (its inexact array leaves are trained; the rest is static),
whose call maps a batch x [B, n_in] (images: [B, H, W, C]; sequences: [B, T, features]) to
y [B, n_out]. The layers vgrun traces are the module's taps (`vgrun.tap`), in the order they run,
and last the network's output (the row named "output"). A network without taps is traced at its
input instead (the row named INPUT says so): the verdict weighs the gradient reaching the input
against the output's, and its per-layer record is its parameter leaves'. Per-layer weight statistics do
not exist for it (taps are activations, not weights): those trace fields are NaN, and each
parameter leaf's norms are traced instead (`LeafTrace`).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from vgrun.config import targets
from vgrun.config.schema import ConfigError
from vgrun.nn.model import Model
from vgrun.probes import taps
from vgrun.probes.layers import LeafTrace, safe_norm, tap_trace

OUTPUT = "output"  # the last traced row: the network's output y
INPUT = "input (no taps)"  # the first row of a network without taps: the gradient reaching its input x


class Net(NamedTuple):
    """A built network, whatever wrote it: params (trained), state (carried), apply(params, state, x, train)."""

    init: Callable  # key -> (params, state)
    apply: Callable  # (params, state, x, train) -> (y, state)
    kind: str  # pair | nnx | equinox


def _kind(obj) -> str:
    if isinstance(obj, tuple) and len(obj) == 2 and callable(obj[1]):
        return "pair"
    mod = type(obj).__module__ or ""
    if "flax" in mod or any("flax.nnx" in (c.__module__ or "") for c in type(obj).__mro__):
        return "nnx"
    if any((c.__module__ or "").startswith("equinox") for c in type(obj).__mro__):
        return "equinox"
    return "unknown"


def adapt(factory: Callable, n_in: int, n_out: int, dtype, key, target: str) -> Net:
    """The factory's network as (init, apply), its parameters cast to `dtype`."""
    cast = lambda tree: jax.tree_util.tree_map(  # noqa: E731
        lambda v: v.astype(dtype) if jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact) else v, tree)
    built = factory(n_in, n_out, key)
    kind = _kind(built)
    if kind == "pair":
        make, user_apply = built
        if callable(make):
            return Net(lambda k: (cast(make(k)), ()), lambda p, s, x, train: (user_apply(p, x), s), kind)
        return Net(lambda k: (cast(factory(n_in, n_out, k)[0]), ()), lambda p, s, x, train: (user_apply(p, x), s), kind)
    if kind == "nnx":
        from flax import nnx

        graph, _, _ = nnx.split(built, nnx.Param, ...)

        def init(k):
            _, params, rest = nnx.split(factory(n_in, n_out, k), nnx.Param, ...)
            return cast(params), rest

        def apply(params, state, x, train):
            module = nnx.merge(graph, params, state, copy=True)  # Variables of this trace level
            module.train() if train else module.eval()
            y = module(x)
            return y, nnx.split(module, nnx.Param, ...)[2]

        return Net(init, apply, kind)
    if kind == "equinox":
        import equinox as eqx

        first, static = eqx.partition(built, eqx.is_inexact_array)
        shape = jax.tree_util.tree_structure(first)  # a factory may define its class anew on every call

        def init(k):
            params = eqx.partition(factory(n_in, n_out, k), eqx.is_inexact_array)[0]
            return cast(jax.tree_util.tree_unflatten(shape, jax.tree_util.tree_leaves(params))), ()

        return Net(init, lambda p, s, x, train: (eqx.combine(p, static)(x), s), kind)
    raise ConfigError("model.target", target, "a factory returning an (init, apply) pair, a Flax NNX module or an "
                                              f"Equinox module (it returned a {type(built).__name__})")


def make(cfg, n_in: int, n_out: int, dtype, x_shape: tuple | None = None) -> Model:
    """The network of model.target for n_in inputs and n_out outputs (see the module's docstring).
    x_shape: one batch's input shape ([B, n_in] by default)."""
    target = cfg.model.target
    factory = targets.load("model.target", target, 3)
    x_shape = x_shape or (cfg.batch_size, n_in)
    n_in = tuple(x_shape[1:]) if len(x_shape) > 2 else n_in  # images, sequences: the factory gets their shape
    net = adapt(factory, n_in, n_out, dtype, jax.random.PRNGKey(0), target)
    params, state = jax.eval_shape(net.init, jax.random.PRNGKey(0))

    def run(params, state, x, train, tapless=False):
        if tapless:  # no tap of its own: the gradient reaching its input, against its output's
            x = taps.tap(INPUT, x)
        y, state = net.apply(params, state, x, train)
        return taps.tap(OUTPUT, y), state

    try:
        program = jax.make_jaxpr(lambda p, s, x: net.apply(p, s, x, True)[0], return_shape=True)
        jaxpr, y = program(params, state, jax.ShapeDtypeStruct(x_shape, dtype))
    except Exception as e:  # the user's code: any error is a bad target
        raise ConfigError("model.target", target, f"a network that maps a batch {list(x_shape)} "
                                                  f"(it raised {type(e).__name__}: {e})") from None
    if tuple(y.shape) != (x_shape[0], n_out):
        raise ConfigError("model.target", target, f"a network whose output is [batch, n_out] = "
                                                  f"{[x_shape[0], n_out]} (it returned {list(y.shape)})")
    found = taps.sites(run, params, state, jax.ShapeDtypeStruct(x_shape, dtype), train=True)
    if len(found) == 1:  # the output alone: traced at its input instead, and its leaves (it says so: INPUT)
        run = partial(run, tapless=True)
        found = taps.sites(run, params, state, jax.ShapeDtypeStruct(x_shape, dtype), train=True)
    n_rows = sum(s.size for s in found)

    def apply(params, state, x, probes=None, train=True, stats=False, **_):
        if probes is None:
            y, state = run(params, state, x, train)
        else:
            y, state = taps.probed(run, probes)(params, state, x, train)
        return y, state, {}

    def trace(grads, probe_grads, params, updates, measured, batch, update_norms=None) -> LeafTrace:
        rows = taps.site_rows(found, probe_grads)  # [n_rows, SITE_FIELDS]
        norms = [jnp.stack([safe_norm(v).astype(rows.dtype) for v in jax.tree_util.tree_leaves(t)])
                 for t in (grads, params, updates)]
        return tap_trace(rows[:, 0], rows[:, 1], rows[:, 2], norms[0], norms[1], norms[2] / norms[1])

    return Model(net.init, apply, lambda: taps.zero_probes(found, dtype), n_rows, recurrent=False, trace=trace,
                 names=taps.row_names(found), stepped="conv_general_dilated" in str(jaxpr),
                 leaves=taps.leaves(params)[0])
