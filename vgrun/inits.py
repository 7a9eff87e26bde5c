"""Weight initializers by name.

Every scheme is a distribution (normal, uniform or orthogonal), a weight std that is a
function of (fan_in, fan_out) times `gain`, and a weight mean. `std` and `mean` in the
config override the scheme's own; biases are N(0, sigma_b^2) (zero by default).

    standard      U[-1/sqrt(n_in), 1/sqrt(n_in)]          Glorot & Bengio 2010, eq. 1
    xavier        N(0, 2/(n_in + n_out))                  Glorot & Bengio 2010 (normal)
    xavier_uniform U[+-sqrt(6/(n_in + n_out))]            Glorot & Bengio 2010, eq. 16
    he            N(0, 2/n_in)                            He et al. 2015
    lecun         N(0, 1/n_in)                            LeCun et al. 1998
    orthogonal    Q from QR of a Gaussian, times gain     Saxe et al. 2014
    normal        N(0, sigma_w^2/n_in)                    mean-field convention
    kumar         N(0, 3.6^2/n_in)                        Kumar 2017, logistic units
    yilmaz_poli   N(max(-1, -8/n_in), 1/n_in)             Yilmaz & Poli 2022: the
                  negative mean is their prescription; the std is LeCun's (override it
                  with init.std).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Scheme:
    dist: str  # normal | uniform | orthogonal
    std: Callable[[int, int], float]  # (fan_in, fan_out) -> std before gain
    mean: Callable[[int], float] = lambda n_in: 0.0


INITS: dict[str, Scheme] = {
    "standard": Scheme("uniform", lambda i, o: 1 / math.sqrt(3 * i)),
    "xavier": Scheme("normal", lambda i, o: math.sqrt(2 / (i + o))),
    "xavier_uniform": Scheme("uniform", lambda i, o: math.sqrt(2 / (i + o))),
    "he": Scheme("normal", lambda i, o: math.sqrt(2 / i)),
    "lecun": Scheme("normal", lambda i, o: 1 / math.sqrt(i)),
    # the std of an orthogonal n_in x n_out matrix's entries is 1/sqrt(max(n_in, n_out))
    "orthogonal": Scheme("orthogonal", lambda i, o: 1 / math.sqrt(max(i, o))),
    "normal": Scheme("normal", lambda i, o: 1 / math.sqrt(i)),  # times sigma_w
    "kumar": Scheme("normal", lambda i, o: 3.6 / math.sqrt(i)),
    "yilmaz_poli": Scheme("normal", lambda i, o: 1 / math.sqrt(i), lambda i: max(-1.0, -8.0 / i)),
}


def weight_stats(icfg, fan_in: int, fan_out: int) -> tuple[float, float]:
    """(mean, std) of the weights this config promises for one fan_in x fan_out layer."""
    scheme = INITS[icfg.name]
    if icfg.std is not None:
        std = icfg.std
    else:
        std = scheme.std(fan_in, fan_out) * icfg.gain * (icfg.sigma_w if icfg.name == "normal" else 1.0)
    mean = scheme.mean(fan_in) if icfg.mean is None else icfg.mean
    return mean, std


def _orthogonal(key, n_in: int, n_out: int, dtype) -> jax.Array:
    a = jax.random.normal(key, (max(n_in, n_out), min(n_in, n_out)), dtype)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diagonal(r))  # Haar-uniform (Mezzadri 2007)
    return q if n_in >= n_out else q.T


def init_weight(key, icfg, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """A weight of `shape` = (..., fan_in, fan_out); leading axes are stacked layers."""
    fan_in, fan_out = shape[-2], shape[-1]
    mean, std = weight_stats(icfg, fan_in, fan_out)
    dist = INITS[icfg.name].dist
    if dist == "normal":
        w = std * jax.random.normal(key, shape, dtype)
    elif dist == "uniform":
        lim = std * math.sqrt(3.0)
        w = jax.random.uniform(key, shape, dtype, -lim, lim)
    else:  # orthogonal: one independent orthogonal matrix per stacked layer
        n = math.prod(shape[:-2])
        keys = jax.random.split(key, n)
        q = jax.vmap(lambda k: _orthogonal(k, fan_in, fan_out, dtype))(keys)
        w = q.reshape(shape) * (std * math.sqrt(max(fan_in, fan_out)))
    return w + jnp.asarray(mean, dtype)


def init_bias(key, icfg, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    # no branch on sigma_b: it may be a traced value (vgrun.hyper); sigma_b = 0 gives zeros
    return icfg.sigma_b * jax.random.normal(key, shape, dtype)
