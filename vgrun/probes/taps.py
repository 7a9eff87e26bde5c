"""Named taps in any JAX function, and the traced gradient of a loss built from them.

    def apply(params, x):                             # any JAX function: Flax, Equinox or plain
        h = jnp.tanh(x @ params["w1"] + params["b1"])
        h = vgrun.tap("hidden", h)                    # the identity unless traced
        return vgrun.tap("output", h @ params["w2"])

    loss, grads, trace = vgrun.traced_value_and_grad(loss_fn)(params, x, y)
    trace.delta     # [taps]: RMS over the batch of |dL_i/dh| at each tap, in the order they ran

Outside `traced_value_and_grad`, `tap` returns its argument itself: an untraced step's jaxpr is
the same with or without taps. Inside, each tap site gets a zero probe, and the gradient of the
loss with respect to it carries, from the tap's backward pass, the site's measurements
(`SITE_FIELDS`: |delta|, then the activation's mean and std, kept from the forward pass). So
they are measured on device, underflow-safe (`vgrun.probes.layers.safe_norm`), inside the
backward pass, and leave any jit, vmap or scan as a gradient does. A tap that runs in a loop gets
its occurrences numbered (`h[0]`, `h[1]`, ...); a tap inside a `lax.scan` body is traced once
and runs many times, so it says which row it is: `tap("block", h, index=i, size=n)`.

A tap sees a batch: its leading axis is the examples (B), and |delta| is sqrt(B) |dL/dh|_F,
the RMS over the batch of each example's |dL_i/dh_i| when the loss is the batch mean.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from vgrun.probes.layers import safe_norm

SITE_FIELDS = ("delta", "act_mean", "act_std")  # one probe row per tap occurrence

_COLLECTOR: contextvars.ContextVar = contextvars.ContextVar("vgrun_taps", default=None)


class Site(NamedTuple):
    """A tap site: its name and how many rows it measures (1, or `size` inside a scan)."""

    name: str
    size: int
    scanned: bool


class _Collector:
    """What the taps of one call see: discovering the sites (probes None), or measuring them."""

    def __init__(self, probes: dict | None = None):
        self.probes = probes
        self.sites: dict[str, Site] = {}
        self.seen: dict[str, int] = {}

    def site(self, name: str, index, size) -> str:
        """The key of this occurrence of `name`: the name, or name[k] for a tap that runs k + 1 times."""
        if (index is None) != (size is None):
            raise TypeError(f"tap {name!r}: give both index= and size= (a tap inside a scan), or neither")
        count = self.seen.get(name, 0)
        self.seen[name] = count + 1
        looped = count > 0 or (self.probes is not None and f"{name}[0]" in self.probes)
        if count == 1 and self.probes is None:  # discovering: the first occurrence is numbered too
            first = self.sites.pop(name)
            self.sites[f"{name}[0]"] = first._replace(name=f"{name}[0]")
        key = f"{name}[{count}]" if looped else name
        self.sites[key] = Site(key, 1 if size is None else int(size), size is not None)
        return key


@contextmanager
def _collecting(collector: _Collector):
    token = _COLLECTOR.set(collector)
    try:
        yield collector
    finally:
        _COLLECTOR.reset(token)


def tap(name: str, x: jax.Array, index=None, size: int | None = None) -> jax.Array:
    """Mark the activation x [B, ...] under `name`; returns x. Inside a `lax.scan` body, index
    (the iteration, traced) and size (the number of iterations) give each iteration a row."""
    collector = _COLLECTOR.get()
    if collector is None:
        return x
    key = collector.site(name, index, size)
    if collector.probes is None:
        return x
    probe = collector.probes.get(key)
    if probe is None:
        raise RuntimeError(f"tap {key!r} ran now but not when the taps were counted: the function's taps "
                           "must not depend on its inputs' values")
    onehot = jnp.ones((1,), x.dtype) if index is None else (jnp.arange(size) == index).astype(x.dtype)
    return _measure(x, probe, onehot)


@jax.custom_vjp
def _measure(x, probe, onehot):
    return x


def _measure_fwd(x, probe, onehot):
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    stats = jnp.stack([jnp.mean(xf), jnp.std(xf)]).astype(probe.dtype)
    return x, (stats, onehot, probe, x.shape[0] if x.ndim else 1)


def _measure_bwd(res, g):
    stats, onehot, probe, batch = res
    delta = jnp.sqrt(jnp.asarray(batch, probe.dtype)) * safe_norm(g).astype(probe.dtype)
    row = jnp.concatenate([delta[None], stats])  # SITE_FIELDS
    return g, onehot.astype(probe.dtype)[:, None] * row[None, :], jnp.zeros_like(onehot)


_measure.defvjp(_measure_fwd, _measure_bwd)


def sites(fn: Callable, *args, **kwargs) -> list[Site]:
    """The tap sites `fn(*args, **kwargs)` runs, in the order they run (abstractly: nothing computed)."""
    with _collecting(_Collector()) as c:
        jax.eval_shape(lambda *a: fn(*a, **kwargs), *args)
    return list(c.sites.values())


def zero_probes(found: list[Site], dtype) -> dict:
    """name -> zeros [size, len(SITE_FIELDS)]: the probes the sites' measurements arrive on."""
    return {s.name: jnp.zeros((s.size, len(SITE_FIELDS)), dtype) for s in found}


def probed(fn: Callable, probes: dict) -> Callable:
    """fn with its taps measuring onto `probes` (from `zero_probes`): differentiate its result with
    respect to probes to read them (`site_rows`)."""

    def run(*args, **kwargs):
        with _collecting(_Collector(dict(probes))):
            return fn(*args, **kwargs)

    return run


def site_rows(found: list[Site], probe_grads: dict) -> jax.Array:
    """[rows, len(SITE_FIELDS)]: the measurements of every site's rows, in order."""
    return jnp.concatenate([probe_grads[s.name] for s in found]) if found else jnp.zeros((0, len(SITE_FIELDS)))


def row_names(found: list[Site]) -> list[str]:
    """One name per row of `site_rows`: a scanned site's rows are numbered (`block[3]`)."""
    return [f"{s.name}[{i}]" if s.scanned else s.name for s in found for i in range(s.size)]


def leaf_name(path) -> str:
    """A parameter leaf's module path, "layers/0/kernel" (Flax NNX's trailing `.value` left out)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    if len(parts) > 1 and parts[-1] in ("value", "raw_value"):
        parts = parts[:-1]
    return "/".join(parts)


def leaves(params) -> tuple[list[str], list[str]]:
    """(leaf names, their layers): a leaf's layer is its module path without the leaf's own name
    ("layers/0/kernel" -> "layers/0"; a top-level leaf is its own layer)."""
    names = [leaf_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return names, [leaf_layer(n) for n in names]


def leaf_layer(name: str) -> str:
    """A leaf's layer: its module path without the leaf's own name ("layers/0/kernel" -> "layers/0")."""
    return name.rsplit("/", 1)[0] if "/" in name else name


class TapTrace(NamedTuple):
    """One traced gradient: per tap row (the order they ran) and per parameter leaf (pytree order)."""

    delta: jax.Array  # [taps] RMS over the batch of |dL_i/dh| at the tap
    act_mean: jax.Array  # [taps] mean of the tapped activation over batch and units
    act_std: jax.Array  # [taps] its std
    grad: jax.Array  # [leaves] |dL/dW| of each parameter leaf
    weight: jax.Array  # [leaves] |W|


class TracedGrad:
    """`traced_value_and_grad(loss_fn)`: call it as loss_fn; after the first call (or trace),
    `taps` names its tap rows and `leaves` / `layers` its parameter leaves and their layers."""

    def __init__(self, loss_fn: Callable, has_aux: bool = False):
        self.loss_fn, self.has_aux = loss_fn, has_aux
        self.taps: list[str] = []
        self.leaves: list[str] = []
        self.layers: list[str] = []

    def __call__(self, params, *args, **kwargs):
        """-> (loss, grads, TapTrace), or ((loss, aux), grads, TapTrace) with has_aux."""
        found = sites(self.loss_fn, params, *args, **kwargs)
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(params)) if jax.tree_util.tree_leaves(params) \
            else jnp.float32
        probes = zero_probes(found, jnp.promote_types(dtype, jnp.float32))
        value, (grads, probe_grads) = jax.value_and_grad(
            lambda p, q: probed(self.loss_fn, q)(p, *args, **kwargs), argnums=(0, 1), has_aux=self.has_aux
        )(params, probes)
        self.taps = row_names(found)
        self.leaves, self.layers = leaves(params)
        rows = site_rows(found, probe_grads)
        g_leaves, w_leaves = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(params)
        stack = lambda xs: jnp.stack(xs) if xs else jnp.zeros((0,))  # noqa: E731
        trace = TapTrace(delta=rows[:, 0], act_mean=rows[:, 1], act_std=rows[:, 2],
                         grad=stack([safe_norm(g) for g in g_leaves]), weight=stack([safe_norm(w) for w in w_leaves]))
        return value, grads, trace


def traced_value_and_grad(loss_fn: Callable, has_aux: bool = False) -> TracedGrad:
    """loss_fn(params, *args) -> loss (or (loss, aux)) becomes
    (params, *args) -> (loss, grads, TapTrace): jax.value_and_grad's value and gradient with
    respect to params, and the trace of the taps the loss ran through and of every parameter
    leaf. Works under jit, vmap and lax.scan, like the gradient it is."""
    return TracedGrad(loss_fn, has_aux)


__all__ = ["SITE_FIELDS", "Site", "TapTrace", "TracedGrad", "leaves", "probed", "row_names", "site_rows", "sites",
           "tap", "traced_value_and_grad", "zero_probes"]
