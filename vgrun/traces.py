"""On-device probes: underflow-safe norms and the per-layer trace of one step.

Layers are indexed 0 .. depth: 0 .. depth-1 are the hidden layers (0 nearest the
input), `depth` is the output layer. Activation statistics exist for hidden layers
only (NaN at the output layer).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

TRACE_FIELDS = ("grad_w", "grad_b", "delta", "weight", "update_ratio", "act_mean", "act_std", "saturated")
STEP_FIELDS = ("loss", "acc", "grad_norm", "test_loss", "test_acc")


class Trace(NamedTuple):
    """One traced step, every field [depth + 1] (per layer)."""

    grad_w: jax.Array  # ||dL/dW_l||_F
    grad_b: jax.Array  # ||dL/db_l||
    delta: jax.Array  # RMS over the batch of ||dL_i/dz_l||, z_l the pre-activation
    weight: jax.Array  # ||W_l||_F
    update_ratio: jax.Array  # ||W_l(t+1) - W_l(t)||_F / ||W_l(t)||_F
    act_mean: jax.Array  # mean of phi(z_l) over batch and units
    act_std: jax.Array  # std of phi(z_l) over batch and units
    saturated: jax.Array  # share of units with |phi'(z_l)| < sat_tol * sup|phi'| on every example


def safe_norm(x: jax.Array, axis=None) -> jax.Array:
    """Euclidean norm that does not underflow: max|x| * ||x / max|x|||.

    sqrt(sum(x**2)) is 0 in float32 once |x| ~ 1e-22 (the squares fall below the
    smallest normal number and XLA on CPU flushes subnormals to zero), and inf once
    |x| ~ 1e19. Scaling by the max first keeps the norm right from float32's smallest
    normal (~1.2e-38) up to its largest. Two passes over x; a one-pass variant (sums of
    squares at three power-of-two scales) measured slower on CPU, where XLA does not
    fuse sibling reductions. Non-finite entries give a non-finite norm (inf or NaN).
    """
    m = jnp.max(jnp.abs(x), axis=axis, keepdims=True, initial=0)  # initial: empty arrays have norm 0
    scale = jnp.where((m > 0) & jnp.isfinite(m), m, 1)
    n = scale * jnp.sqrt(jnp.sum(jnp.square(x / scale), axis=axis, keepdims=True))
    n = jnp.where(jnp.isinf(m), m, n)  # an inf entry: the norm is inf
    return jnp.squeeze(n, axis) if axis is not None else n.reshape(())


@jax.custom_vjp
def tap(x: jax.Array, probe: jax.Array) -> jax.Array:
    """Identity on x. Differentiating the loss with respect to the zero scalar `probe`
    gives the underflow-safe norm of the gradient flowing through x (its cotangent):
    a probe measured inside the backward pass, while that gradient is in cache."""
    return x


def _tap_fwd(x, probe):
    return x, None


def _tap_bwd(_, g):
    return g, safe_norm(g)


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


def layer_norms(tree, name: str) -> jax.Array:
    """[depth + 1] norms of leaf `name` of each layer in an {inp, hid, out} tree."""
    hid = tree["hid"][name]
    return jnp.concatenate(
        [safe_norm(tree["inp"][name])[None], safe_norm(hid, tuple(range(1, hid.ndim))), safe_norm(tree["out"][name])[None]]
    )


def trace_step(grads, probe_grads, params, updates, layer_stats, batch: int) -> Trace:
    """The per-layer trace of one step from what the step computed anyway.

    probe_grads hold |dL/dz_l|_F (over the batch), |dL/dW_l|, |dL/db_l| (`tap`)."""
    hid, out = probe_grads["hid"], probe_grads["out"]
    per_layer = {k: jnp.concatenate([hid[k], out[k][None]]) for k in ("z", "w", "b")}
    # dL/dz = (1/B) dL_i/dz_i for a batch-mean loss, so RMS_i |dL_i/dz_i| = sqrt(B) |dL/dz|_F
    delta = jnp.sqrt(jnp.asarray(batch, per_layer["z"].dtype)) * per_layer["z"]
    mean, std, sat, w_hidden = layer_stats
    weight = jnp.concatenate([w_hidden, safe_norm(params["out"]["w"])[None]])
    nan = jnp.full((1,), jnp.nan, delta.dtype)
    mean, std, sat = (jnp.concatenate([v.astype(delta.dtype), nan]) for v in (mean, std, sat))
    return Trace(
        grad_w=per_layer["w"],
        grad_b=per_layer["b"],
        delta=delta,
        weight=weight,
        update_ratio=layer_norms(updates, "w") / weight,
        act_mean=mean,
        act_std=std,
        saturated=sat,
    )
