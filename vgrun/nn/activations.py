"""Activations by name: the function, its derivative, and its peak slope.

The derivative is written out by hand because the theory (`vgrun.science.theory`) and the
saturation probe need phi' directly; `tests/test_activations.py` checks every one
against `jax.grad`. `slope_of_output` gives phi' from phi's output where that determines
it (a recurrent backward pass then keeps the outputs only, not the slopes too). `peak` is sup |phi'| (for gcu, whose slope is unbounded, the slope
at the origin): a unit counts as saturated when |phi'(z)| < sat_tol * peak.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Fn = Callable[[jax.Array], jax.Array]

LEAKY_SLOPE = 0.01  # PyTorch / optax default negative slope
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class Activation(NamedTuple):
    fn: Fn
    deriv: Fn
    peak: float  # sup |phi'(z)|, the reference slope for saturation
    slope_of_output: Fn | None = None  # y = phi(z) -> phi'(z), where y determines it (None: it does not)


def _sigmoid_d(z):
    s = jax.nn.sigmoid(z)
    return s * (1 - s)


def _gelu(z):  # exact (erf) GELU
    return 0.5 * z * (1 + jax.lax.erf(z / math.sqrt(2.0)))


def _gelu_d(z):
    cdf = 0.5 * (1 + jax.lax.erf(z / math.sqrt(2.0)))
    pdf = jnp.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return cdf + z * pdf


def _silu_d(z):
    s = jax.nn.sigmoid(z)
    return s * (1 + z * (1 - s))


def _elu(z):
    return jnp.where(z > 0, z, jnp.expm1(jnp.minimum(z, 0)))


def _selu(z):
    return SELU_SCALE * jnp.where(z > 0, z, SELU_ALPHA * jnp.expm1(jnp.minimum(z, 0)))


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(jax.nn.sigmoid, _sigmoid_d, 0.25, lambda y: y * (1 - y)),
    "tanh": Activation(jnp.tanh, lambda z: 1 - jnp.tanh(z) ** 2, 1.0, lambda y: 1 - y * y),
    "relu": Activation(lambda z: jnp.maximum(z, 0), lambda z: (z > 0).astype(z.dtype), 1.0,
                       lambda y: (y > 0).astype(y.dtype)),
    "leaky_relu": Activation(
        lambda z: jnp.where(z > 0, z, LEAKY_SLOPE * z),
        lambda z: jnp.where(z > 0, 1.0, LEAKY_SLOPE).astype(z.dtype),
        1.0,
        lambda y: jnp.where(y > 0, 1.0, LEAKY_SLOPE).astype(y.dtype),
    ),
    "elu": Activation(_elu, lambda z: jnp.where(z > 0, 1.0, jnp.exp(jnp.minimum(z, 0))), 1.0,
                      lambda y: jnp.where(y > 0, 1.0, y + 1)),
    "selu": Activation(
        _selu,
        lambda z: SELU_SCALE * jnp.where(z > 0, 1.0, SELU_ALPHA * jnp.exp(jnp.minimum(z, 0))),
        SELU_SCALE * SELU_ALPHA,
        lambda y: jnp.where(y > 0, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA),
    ),
    "gelu": Activation(_gelu, _gelu_d, 1.1289),
    "silu": Activation(jax.nn.silu, _silu_d, 1.0998),
    "softplus": Activation(jax.nn.softplus, jax.nn.sigmoid, 1.0, lambda y: -jnp.expm1(-y)),
    # growing cosine unit (Noel et al. 2021): oscillatory, non-monotone
    "gcu": Activation(lambda z: z * jnp.cos(z), lambda z: jnp.cos(z) - z * jnp.sin(z), 1.0),
    "linear": Activation(lambda z: z, jnp.ones_like, 1.0, jnp.ones_like),
    "hard_tanh": Activation(
        lambda z: jnp.clip(z, -1.0, 1.0),
        lambda z: (jnp.abs(z) < 1).astype(z.dtype),
        1.0,
        lambda y: (jnp.abs(y) < 1).astype(y.dtype),
    ),
}
