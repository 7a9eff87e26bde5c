"""Normalization of a pre-activation z [B, d]: none, batchnorm, layernorm.

batchnorm (Ioffe & Szegedy 2015) uses batch statistics in training and running
statistics at evaluation; layernorm (Ba et al. 2016) normalizes each example over its
units. Both carry a learnable scale g and shift beta [d].
"""

from __future__ import annotations

import jax.numpy as jnp

EPS = 1e-5


def normalize(kind: str, z, p, stats, train: bool, momentum: float):
    """Returns (normalized z, updated running stats (mean, var) or the old ones)."""
    if kind == "none":
        return z, stats
    if kind == "layernorm":
        mean, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
    elif train:
        mean, var = z.mean(0), z.var(0)
        stats = (momentum * stats[0] + (1 - momentum) * mean, momentum * stats[1] + (1 - momentum) * var)
    else:
        mean, var = stats
    return p["g"] * (z - mean) / jnp.sqrt(var + EPS) + p["beta"], stats
