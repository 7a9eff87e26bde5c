"""Gradient flow through time: the trace of a recurrent network and its diagnosis.

Time steps are indexed t = 0 .. T-1 (T = seq_len); `horizon` k = T-1-t counts steps
back from the end, where the loss is taken. Per traced step and recurrent layer:

    delta[l, t]     RMS over the batch of |dL/dh_t| (BPTT, measured inside the reverse scan)
    jacobian[l, t]  RMS over the batch of |v^T dh_{T-1}/dh_t| for a random unit v per
                    example: a one-pass estimate of the Jacobian product
                    prod dh_s/dh_{s-1} over the horizon k (E|v^T J|^2 = |J|_F^2 / H),
                    pulled back in the same reverse scan as the loss's gradient
    grad_rec, grad_in, grad_b   |dL/dW_rec|, |dL/dU|, |dL/db|
    weight_rec, update_ratio    |W_rec|, |W_rec(t+1) - W_rec(t)| / |W_rec(t)|
    rho, sigma_max              spectral radius and largest singular value of W_rec
                                (its first H x H block for gated cells), computed on the
                                host from the W_rec the program hands out (`finish`), in a
                                thread beside the next chunk: a host eig inside the step
                                stalls it (see benchmarks/README.md)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vgrun.probes.spectra import spectral_host
from vgrun.probes.layers import safe_norm


class TimeTrace(NamedTuple):
    delta: jax.Array  # [D, T]
    jacobian: jax.Array  # [D, T]
    grad_rec: jax.Array  # [D]
    grad_in: jax.Array  # [D]
    grad_b: jax.Array  # [D]
    weight_rec: jax.Array  # [D]
    update_ratio: jax.Array  # [D]
    rho: jax.Array  # [D]
    sigma_max: jax.Array  # [D]


TIME_FIELDS = ("delta", "jacobian")
LAYER_FIELDS = ("grad_rec", "grad_in", "grad_b", "weight_rec", "update_ratio", "rho", "sigma_max")


def unit_vectors(key, like: jax.Array) -> jax.Array:
    """A random unit vector per example: [B, H] like `like`."""
    v = jax.random.normal(key, like.shape, like.dtype)
    return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def trace_step(params, grads, taps, updates, batch: int) -> tuple[TimeTrace, jax.Array]:
    """taps: {"loss": |dL/dh_t|_F, "jacobian": |v_i^T dh_{T-1,i} / dh_{t,i}|_F} [D, T], both
    measured in the one pull back of vgrun.training.loop's traced step (vgrun.nn.rnn: the time
    scans). -> (the trace with rho and sigma_max still NaN, W_rec [D, H, H] for `finish`)."""
    h = params["rec"]["w"].shape[-2]
    root_b = jnp.sqrt(jnp.asarray(batch, taps["loss"].dtype))
    delta = root_b * taps["loss"]
    jacobian = taps["jacobian"] / root_b
    w_in = [grads["inp"]["w"][None]] + ([grads["hid"]["w"]] if grads["hid"]["w"].shape[0] else [])
    grad_in = jnp.concatenate([safe_norm(g, (1, 2)) for g in w_in])
    w = params["rec"]["w"]
    weight = safe_norm(w, (1, 2))
    nan = jnp.full(w.shape[:1], jnp.nan, w.dtype)
    trace = TimeTrace(
        delta=delta,
        jacobian=jacobian,
        grad_rec=safe_norm(grads["rec"]["w"], (1, 2)),
        grad_in=grad_in,
        grad_b=safe_norm(grads["rec"]["b"], 1),
        weight_rec=weight,
        update_ratio=safe_norm(updates["rec"]["w"], (1, 2)) / weight,
        rho=nan,
        sigma_max=nan,
    )
    return trace, w[:, :, :h]


def finish(traced: tuple[TimeTrace, np.ndarray]) -> TimeTrace:
    """On the host: (trace, W_rec [..., D, H, H]) -> the trace with rho and sigma_max of W_rec."""
    trace, w_rec = traced
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # one core: XLA computes the next chunk on the other
        rho, smax = spectral_host(w_rec)
    return trace._replace(rho=rho, sigma_max=smax)
