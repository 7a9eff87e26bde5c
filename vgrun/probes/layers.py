"""On-device probes: underflow-safe norms and the per-layer trace of one step.

Layers are indexed 0 .. depth: 0 .. depth-1 are the hidden layers (0 nearest the
input), `depth` is the output layer. Activation statistics exist for hidden layers
only (NaN at the output layer).
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

TRACE_FIELDS = ("grad_w", "grad_b", "delta", "stream", "weight", "update_ratio", "act_mean", "act_std", "saturated")
STEP_FIELDS = ("loss", "acc", "grad_norm", "test_loss", "test_acc")


class Trace(NamedTuple):
    """One traced step, every field [depth + 1] (per layer)."""

    grad_w: jax.Array  # ||dL/dW_l||_F
    grad_b: jax.Array  # ||dL/db_l||
    delta: jax.Array  # RMS over the batch of ||dL_i/dz_l||, z_l the pre-activation
    stream: jax.Array  # residual networks: RMS over the batch of ||dL_i/dh_l||, h_l the block's output (else NaN)
    weight: jax.Array  # ||W_l||_F
    update_ratio: jax.Array  # ||W_l(t+1) - W_l(t)||_F / ||W_l(t)||_F
    act_mean: jax.Array  # mean of phi(z_l) over batch and units
    act_std: jax.Array  # std of phi(z_l) over batch and units
    saturated: jax.Array  # share of units with |phi'(z_l)| < sat_tol * sup|phi'| on every example


class LeafTrace(NamedTuple):
    """One traced step of a network of one's own (`vgrun.nn.custom`): Trace's fields per traced
    layer (its taps, then the output) [L], and per parameter leaf [P], in pytree order."""

    grad_w: jax.Array
    grad_b: jax.Array
    delta: jax.Array
    stream: jax.Array
    weight: jax.Array
    update_ratio: jax.Array
    act_mean: jax.Array
    act_std: jax.Array
    saturated: jax.Array
    leaf_grad: jax.Array  # [P] |dL/dW| of each parameter leaf
    leaf_weight: jax.Array  # [P] |W|
    leaf_update_ratio: jax.Array  # [P] |W(t+1) - W(t)| / |W(t)|


def tap_trace(delta, act_mean, act_std, leaf_grad, leaf_weight, leaf_update_ratio, xp=jnp) -> LeafTrace:
    """The LeafTrace of a network's taps (the last one its output), fields [..., L] and [..., P]: Trace's
    weight fields NaN (taps are activations), no activation statistics at the output. xp: jnp inside a
    program, numpy on the host (float64 kept)."""
    nan = xp.full_like(delta, xp.nan)
    output = xp.arange(delta.shape[-1]) == delta.shape[-1] - 1
    return LeafTrace(grad_w=nan, grad_b=nan, delta=delta, stream=nan, weight=nan, update_ratio=nan,
                     act_mean=xp.where(output, xp.nan, act_mean), act_std=xp.where(output, xp.nan, act_std),
                     saturated=nan, leaf_grad=leaf_grad, leaf_weight=leaf_weight, leaf_update_ratio=leaf_update_ratio)


def safe_norm(x: jax.Array, axis=None) -> jax.Array:
    """Euclidean norm that does not underflow or overflow, in one pass where that is exact.

    sqrt(sum(x**2)) is 0 in float32 once |x| ~ 1e-22 (the squares fall below the
    smallest normal number and XLA on CPU flushes subnormals to zero), and inf once
    |x| ~ 1e19. So the plain sum of squares s is kept only where it is provably right:
    s finite and s >= `_exact_floor` (then the squares and partial sums that may have
    been flushed add up to less than half a unit in the last place of s). Otherwise
    (vanishing or exploding arrays, inf, NaN) it falls back to `scaled_norm` (max|x|
    first, then the scaled sum of squares: right from float32's smallest normal, ~1.2e-38,
    up to its largest). One `lax.cond` per call, on all the norms it returns at once: the
    common case is one pass over x instead of two (faster, most on a loaded machine; timings
    in benchmarks/README.md). Norms over at most `SMALL` entries (biases) go straight to
    scaled_norm. Under `vmap` a cond becomes a select that runs both
    branches, so the batching rule takes the cond on all members at once instead.
    Non-finite entries give a non-finite norm (inf or NaN); differentiable (d|x| = <x, dx> / |x|).
    """
    x = jnp.asarray(x)
    if axis is None:
        axes = tuple(range(x.ndim))
    else:
        axes = tuple(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))
    n = _norm(x, axes)
    return n if axis is not None else n.reshape(())


def scaled_norm(x: jax.Array, axes: tuple) -> jax.Array:
    """max|x| * ||x / max|x|||: two passes over x, right over the whole float range."""
    m = jnp.max(jnp.abs(x), axis=axes, keepdims=True, initial=0)  # initial: empty arrays have norm 0
    scale = jnp.where((m > 0) & jnp.isfinite(m), m, 1)
    n = scale * jnp.sqrt(jnp.sum(jnp.square(x / scale), axis=axes, keepdims=True))
    n = jnp.where(jnp.isinf(m), m, n)  # an inf entry: the norm is inf
    return jnp.squeeze(n, axes)


def _exact_floor(dtype, n: int) -> float:
    """A sum of n squares at least this large is exact to rounding: the at most 2n squares and
    partial sums below the smallest normal (flushed to 0 or not) are each off by less than
    `tiny`, in all less than 2n * tiny <= s * eps / 2."""
    fi = jnp.finfo(dtype)
    return 2.0 ** (fi.minexp + fi.nmant + 2 + math.ceil(math.log2(max(n, 1))))


SMALL = 1024  # norms over at most this many entries skip the one-pass attempt


def _checked(axes):
    """x -> the norms over axes: plain where exact, else scaled_norm (one cond for all members under vmap)."""

    def norm(x):
        n = math.prod(x.shape[a] for a in axes)
        if n <= SMALL:  # two passes over a bias cost less than a cond (and compile faster)
            return scaled_norm(x, axes)
        floor = jnp.asarray(_exact_floor(x.dtype, n), x.dtype)
        s = jnp.sum(jnp.square(x), axis=axes)
        exact = jnp.all((s >= floor) & jnp.isfinite(s))
        return cond_all(exact, lambda s, x: jnp.sqrt(s), lambda s, x: scaled_norm(x, axes), s, x)

    return norm


def cond_all(pred, true_fun, false_fun, *operands):
    """`lax.cond(pred, true_fun, false_fun, *operands)` that stays one cond under `vmap`.

    vmap turns a cond on a batched predicate into a select that runs both branches; here the
    batched cond takes true_fun for every member when pred holds for all of them, else
    false_fun for all. So both branches must be right wherever they are taken: true_fun is the
    fast path, false_fun the general one. Branches see nothing but their operands."""

    @custom_vmap
    def run(pred, *ops):
        return jax.lax.cond(pred, true_fun, false_fun, *ops)

    @run.def_vmap
    def _batched(axis_size, in_batched, pred, *ops):
        axes = jax.tree_util.tree_map(lambda b: 0 if b else None, tuple(in_batched[1:]))
        branches = [jax.vmap(f, in_axes=axes, axis_size=axis_size) for f in (true_fun, false_fun)]
        out = jax.lax.cond(jnp.all(pred), *branches, *ops)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return run(pred, *operands)


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def _norm(x, axes):
    return _checked(axes)(x)


@_norm.defjvp
def _norm_jvp(axes, primals, tangents):  # custom_vmap has no derivative of its own
    (x,), (t,) = primals, tangents
    n = _norm(x, axes)
    return n, jnp.where(n > 0, jnp.sum(x * t, axis=axes) / jnp.where(n > 0, n, 1), 0)


@jax.custom_vjp
def tap(x: jax.Array, probe: jax.Array) -> jax.Array:
    """Identity on x. Differentiating the loss with respect to the zero scalar `probe`
    gives the underflow-safe norm of the gradient flowing through x (its cotangent):
    a probe measured inside the backward pass, while that gradient is in cache. A probe of
    shape [vgrun.probes.histograms.N_COUNTS] gives the histogram of log10 |cotangent| instead."""
    return x


def _tap_fwd(x, probe):
    return x, probe  # the probe's shape says what to measure


def _tap_bwd(probe, g):
    if probe.ndim == 0:
        return g, safe_norm(g)
    from vgrun.probes.histograms import log_histogram

    return g, log_histogram(g, probe.dtype)


tap.defvjp(_tap_fwd, _tap_bwd)


def global_norm(tree) -> jax.Array:
    """Underflow-safe norm of a whole pytree (optax.global_norm squares and underflows)."""
    leaves = [safe_norm(x) for x in jax.tree_util.tree_leaves(tree)]
    return safe_norm(jnp.stack(leaves))


def trace_global_norm(grads, trace: Trace) -> jax.Array:
    """The global gradient norm from the per-layer norms already in the trace (no extra pass)."""
    parts = [trace.grad_w, trace.grad_b]
    parts += [safe_norm(g)[None] for layer in grads.values() for k, g in layer.items() if k not in ("w", "b")]
    return safe_norm(jnp.concatenate(parts))


def layer_norms(tree, name: str, per_layer: bool = True) -> jax.Array:
    """[depth + 1] norms of leaf `name` of each layer in an {inp, hid, out} tree.

    per_layer: one norm per hidden layer (lax.map), so safe_norm's exact-or-fallback choice
    is per layer and a vanishing first layer does not send every layer to the two-pass
    fallback (faster for the update norms; see benchmarks/README.md). Else one norm over the
    stack with one check: cheaper for a gradient the backward pass just wrote (see `trace_step`)."""
    stack = tree["hid"][name]
    hid = jax.lax.map(safe_norm, stack) if per_layer else safe_norm(stack, tuple(range(1, stack.ndim)))
    return jnp.concatenate([safe_norm(tree["inp"][name])[None], hid, safe_norm(tree["out"][name])[None]])


def trace_step(grads, probe_grads, params, updates, measured, batch: int, update_norms=None) -> Trace:
    """The per-layer trace of one step from what the step computed anyway.

    probe_grads hold |dL/dz_l|_F (over the batch), maybe |dL/dW_l| and, in a residual network,
    |dL/dh_l|_F at each block's output (`tap`); the rest is measured on the gradient `grads`,
    one norm over each stack.
    update_norms: |dL/dW_l| [depth + 1] -> |W_l(t+1) - W_l(t)| [depth + 1], when the caller
    knows them without a pass over `updates` (else `layer_norms(updates, "w")`)."""
    hid, out = probe_grads["hid"], probe_grads["out"]
    per_layer = {k: jnp.concatenate([hid[k], out[k][None]]) for k in hid if k in out}
    for name in ("w", "b"):
        if name not in per_layer:
            per_layer[name] = layer_norms(grads, name, per_layer=False)
    # dL/dz = (1/B) dL_i/dz_i for a batch-mean loss, so RMS_i |dL_i/dz_i| = sqrt(B) |dL/dz|_F
    root_b = jnp.sqrt(jnp.asarray(batch, per_layer["z"].dtype))
    delta = root_b * per_layer["z"]
    nan = jnp.full((1,), jnp.nan, delta.dtype)
    stream = jnp.concatenate([root_b * hid["h"], nan]) if "h" in hid else jnp.full_like(delta, jnp.nan)
    mean, std, sat, w_hidden = (measured[k] for k in ("act_mean", "act_std", "saturated", "weight"))
    weight = jnp.concatenate([w_hidden, safe_norm(params["out"]["w"])[None]])
    mean, std, sat = (jnp.concatenate([v.astype(delta.dtype), nan]) for v in (mean, std, sat))
    return Trace(
        grad_w=per_layer["w"],
        grad_b=per_layer["b"],
        delta=delta,
        stream=stream,
        weight=weight,
        update_ratio=(layer_norms(updates, "w") if update_norms is None else update_norms(per_layer["w"])) / weight,
        act_mean=mean,
        act_std=std,
        saturated=sat,
    )
