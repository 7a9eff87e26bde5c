"""Dynamical isometry at initialization (Pennington, Schoenholz & Ganguli 2017): the spectrum of
the hidden stack's input-output Jacobian, measured on the run's own initial weights, beside the
prediction of `vgrun.science.theory.isometry`.

The stack h_l = phi(h_{l-1} W_l + b_l), l = 1 .. depth-1 (the width x width layers; the input
layer, d_in x width, is left out), is differentiated at `examples` hidden states h_0 = phi(z),
z ~ N(0, q*) per unit: every layer's pre-activations at the fixed point, as the theory assumes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

EXAMPLES = 8  # Jacobians measured: their eigenvalues pooled (width each)


def measure(cfg, examples: int = EXAMPLES) -> dict:
    """{layers, width, examples, measured: {mean, var, max} of lambda = sigma(J)^2, predicted: {...},
    mean_over_predicted, var_over_predicted} for the plain mlp of cfg, at the run's initial weights."""
    from vgrun.data.problem import make as make_problem
    from vgrun.nn import make_model
    from vgrun.nn.activations import ACTIVATIONS
    from vgrun.nn.inits import weight_stats
    from vgrun.probes.spectra import jacobian_gram_eigs
    from vgrun.science import theory

    dtype = jnp.dtype(cfg.dtype)
    model = make_model(cfg, make_problem(cfg, dtype))
    params, _ = jax.jit(model.init)(jax.random.split(jax.random.PRNGKey(cfg.seed))[0])  # the run's own (program.init)
    w, b = params["hid"]["w"], params["hid"]["b"]  # [L, width, width], [L, width]
    _, std = weight_stats(cfg.init, cfg.width, cfg.width)
    sigma_w2, sigma_b2 = std**2 * cfg.width, cfg.init.sigma_b**2
    layers = int(w.shape[0])
    predicted = theory.isometry(cfg.act, sigma_w2, sigma_b2, layers, cfg.init.name == "orthogonal")
    phi = ACTIVATIONS[cfg.act].fn

    def stack(h):
        return jax.lax.scan(lambda h, wb: (phi(h @ wb[0] + wb[1]), None), h, (w, b))[0]

    z = math.sqrt(predicted["q_star"]) * jax.random.normal(jax.random.PRNGKey(cfg.seed + 1), (examples, cfg.width), dtype)
    lam = np.asarray(jax.jit(jacobian_gram_eigs, static_argnums=0)(stack, phi(z)), np.float64).ravel()
    measured = {"mean": float(lam.mean()), "var": float(lam.var()), "max": float(lam.max())}
    return {"layers": layers, "width": cfg.width, "examples": examples, "sigma_w2": sigma_w2, "sigma_b2": sigma_b2,
            "measured": measured, "predicted": predicted,
            "mean_over_predicted": measured["mean"] / predicted["mean"],
            "var_over_predicted": measured["var"] / predicted["var"] if predicted["var"] > 0 else math.nan}
