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
from typing import Callable, NamedTuple

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


def after(x, token):
    """x, made to wait for `token` (None: no wait). Every QR of an init program goes
    through here, so XLA runs them one after another: on the CPU, jaxlib 0.10's batched
    LAPACK kernels fan the batch out over XLA's thread pool and block until it is done,
    and as many QRs at once as the pool has threads (an LSTM's four gate blocks on two
    threads) left every thread waiting for the others: a hang. XLA's runtime orders
    kernels by the buffers they read, so the wait is a real read: x + 0 * token[0] (x
    itself for a finite token; XLA does not fold 0 * t, which is NaN for an infinite t)."""
    if token is None:
        return x
    return x + jnp.zeros((), x.dtype) * token.ravel()[0].astype(x.dtype)


def _orthogonal(key, n_in: int, n_out: int, dtype, token=None) -> jax.Array:
    a = after(jax.random.normal(key, (max(n_in, n_out), min(n_in, n_out)), dtype), token)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diagonal(r))  # Haar-uniform (Mezzadri 2007)
    return q if n_in >= n_out else q.T


def init_weight(key, icfg, shape: tuple[int, ...], dtype=jnp.float32, token=None) -> jax.Array:
    """A weight of `shape` = (..., fan_in, fan_out); leading axes are stacked layers.
    token: an orthogonal draw waits for it (see `after`)."""
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
        q = jax.vmap(lambda k: _orthogonal(k, fan_in, fan_out, dtype), axis_size=n)(after(keys, token))
        w = q.reshape(shape) * (std * math.sqrt(max(fan_in, fan_out)))
    return w + jnp.asarray(mean, dtype)


def init_bias(key, icfg, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    # no branch on sigma_b: it may be a traced value (vgrun.config.hyper); sigma_b = 0 gives zeros
    return icfg.sigma_b * jax.random.normal(key, shape, dtype)


class _Draw(NamedTuple):
    """One array of init_many: index in the requests, key, shape, the distribution's bounds
    (uniform: lo, hi), then scale (normal: std) and shift (mean); None: none."""

    index: int
    key: jax.Array
    shape: tuple
    bounds: tuple
    scale: object
    shift: object


SMALL_DRAW = 1 << 16  # padding a group of draws up to this many numbers costs no measurable time


def _size_groups(sizes: list[int]) -> list[list[int]]:
    """Indices grouped for one vmapped draw each, padded to the group's largest size: a draw
    joins a group while the padding at most doubles the numbers drawn (or stays small)."""
    groups: list[list[int]] = []
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        if groups:
            g = groups[-1]
            padded = sizes[g[0]] * (len(g) + 1)
            if padded <= max(SMALL_DRAW, 2 * (sum(sizes[j] for j in g) + sizes[i])):
                g.append(i)
                continue
        groups.append([i])
    return groups


def init_many(requests: list[tuple], icfg, dtype=jnp.float32, token=None) -> list[jax.Array]:
    """requests: [(key, shape, "weight" | "bias")] -> the arrays init_weight / init_bias(key,
    icfg, shape, dtype) draw one by one.

    Each random draw puts its own copy of the threefry hash into the program, and XLA is
    slow to compile each (timings in benchmarks/README.md). Here draws of one
    distribution and similar size share one: `vmap` over their keys of a draw of the
    largest size, each sliced to its own. Under JAX's partitionable threefry (its default)
    a draw's numbers depend on the key and the flat index only, so the slices are the lone
    draws: bit for bit op by op; inside a jitted program XLA may round the scaling by the
    std differently, so a seed's normal weights can move by 1 ulp (tests/test_inits.py)."""
    out: list = [None] * len(requests)
    draws: dict[str, list[_Draw]] = {"normal": [], "uniform": []}
    for i, (key, shape, kind) in enumerate(requests):
        if kind == "bias":
            draws["normal"].append(_Draw(i, key, shape, (), icfg.sigma_b, None))
            continue
        mean, std = weight_stats(icfg, shape[-2], shape[-1])
        dist = INITS[icfg.name].dist
        if dist == "normal":
            draws["normal"].append(_Draw(i, key, shape, (), std, mean))
        elif dist == "uniform":
            lim = std * math.sqrt(3.0)
            draws["uniform"].append(_Draw(i, key, shape, (-lim, lim), None, mean))
        else:  # orthogonal, one QR after another: token is the last one drawn (or the caller's), see `after`
            out[i] = token = init_weight(key, icfg, shape, dtype, token)
    sample = {"normal": lambda k, n: jax.random.normal(k, (n,), dtype),
              "uniform": lambda k, n, lo, hi: jax.random.uniform(k, (n,), dtype, lo, hi)}
    for dist, group_draws in draws.items():
        sizes = [math.prod(d.shape) for d in group_draws]
        for group in _size_groups(sizes):
            n, members = sizes[group[0]], [group_draws[j] for j in group]
            bounds = [jnp.stack([jnp.asarray(d.bounds[c], dtype) for d in members]) for c in range(len(members[0].bounds))]
            z = jax.vmap(lambda k, *b: sample[dist](k, n, *b))(jnp.stack([d.key for d in members]), *bounds)
            for row, (j, d) in enumerate(zip(group, members)):
                v = z[row, : sizes[j]].reshape(d.shape)
                if d.scale is not None:
                    v = d.scale * v
                out[d.index] = v if d.shift is None else v + jnp.asarray(d.shift, dtype)
    return out
