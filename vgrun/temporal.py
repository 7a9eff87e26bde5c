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
                                stalled it (8 of 41 ms per traced step, tanh RNN, H=128)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vgrun.models.rnn import spectral_host
from vgrun.traces import safe_norm


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
    measured in the one pull back of vgrun.train's traced step (vgrun.models.rnn: the time
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


def decay_per_step(delta_t: np.ndarray) -> float:
    """Least-squares |delta_t| / |delta_{t+1}|: exp(-slope of log|delta_t| against t)."""
    with np.errstate(divide="ignore"):
        y = np.log(np.asarray(delta_t, np.float64))
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return math.nan
    return float(np.exp(-np.polyfit(np.arange(len(y))[ok], y[ok], 1)[0]))


def effective_memory(delta_t: np.ndarray, ratio: float) -> int:
    """Steps back from the end over which |delta_t| stays above `ratio` * |delta_{T-1}|."""
    rel = np.asarray(delta_t, np.float64) / float(delta_t[-1])
    below = np.flatnonzero(~(rel >= ratio))  # NaN counts as lost
    return len(rel) - 1 - int(below.max()) - 1 if below.size else len(rel) - 1


def diagnose(cfg, traces: TimeTrace, status: str) -> dict:
    """Verdict from the top layer's |delta_0| / |delta_{T-1}| (median over traced steps)."""
    dcfg = cfg.diagnosis
    delta = np.asarray(traces.delta, np.float64)[:, -1, :]  # [S, T], top layer
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = delta[:, 0] / delta[:, -1]
    ok = np.isfinite(ratio) & (ratio > 0)
    r = float(np.exp(np.median(np.log(ratio[ok])))) if ok.any() else math.nan
    if not ok.any():
        verdict = "exploding" if status == "diverged" else "vanishing"
    else:
        verdict = "vanishing" if r < dcfg.vanish_ratio else "exploding" if r > dcfg.explode_ratio else "healthy"
    factor = decay_per_step(delta[0, :-1]) if len(delta) else math.nan
    fin = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731
    return {
        "verdict": verdict,
        "ratio_first_last": fin(r),
        "ratio_first_last_init": fin(ratio[0]),
        "ratio_first_last_final": fin(ratio[-1]),
        "per_step_factor_init": fin(factor),
        "memory_ratio": dcfg.memory_ratio,
        "effective_memory_init": effective_memory(delta[0], dcfg.memory_ratio),
        "effective_memory_final": effective_memory(delta[-1], dcfg.memory_ratio),
        "e_fold_steps_init": fin(1 / abs(math.log(factor))) if factor and np.isfinite(factor) and factor != 1 else None,
        "rho_init": [fin(v) for v in np.asarray(traces.rho)[0]],
        "sigma_max_init": [fin(v) for v in np.asarray(traces.sigma_max)[0]],
        "rho_final": [fin(v) for v in np.asarray(traces.rho)[-1]],
        "sigma_max_final": [fin(v) for v in np.asarray(traces.sigma_max)[-1]],
        "thresholds": {"vanish_ratio": dcfg.vanish_ratio, "explode_ratio": dcfg.explode_ratio},
        "nonfinite": {f: int(np.size(getattr(traces, f)) - np.isfinite(getattr(traces, f)).sum())
                      for f in TimeTrace._fields},
    }


def frames(cfg, traces: TimeTrace, every: int, columns: dict):
    """(time table: step x layer x t, layer table: step x layer) as DataFrames."""
    import pandas as pd

    s, d, t = np.shape(traces.delta)
    time = pd.DataFrame({
        "step": np.repeat(np.arange(s) * every, d * t),
        "layer": np.tile(np.repeat(np.arange(d), t), s),
        "t": np.tile(np.arange(t), s * d),
        "horizon": np.tile(t - 1 - np.arange(t), s * d),
        **{f: np.asarray(getattr(traces, f), np.float64).reshape(-1) for f in TIME_FIELDS},
    })
    layers = pd.DataFrame({
        "step": np.repeat(np.arange(s) * every, d),
        "layer": np.tile(np.arange(d), s),
        **{f: np.asarray(getattr(traces, f), np.float64).reshape(-1) for f in LAYER_FIELDS},
    })
    for frame in (time, layers):
        for k, v in columns.items():
            frame[k] = v
    return time, layers
