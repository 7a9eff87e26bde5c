"""Histograms of log10 |value| on the device, in fixed bins wide enough for float64.

The practitioner's checks "the kernel weights fall regularly near zero" and "units die" need
the distribution of magnitudes, not only a norm. `log_histogram(x)` counts the entries of x
in half-decade bins of log10 |x| from 1e-324 (below float64's smallest subnormal) to 1e309
(above its largest finite value), with two extra counts: exact zeros and non-finite entries.
Every run, float32 or float64, uses the same bins, so histograms compare across runs.

`hist_tap(x, probe)` is the identity on x; differentiating the loss with respect to the zero
probe (shape [N_COUNTS]) gives the histogram of the gradient flowing through x (its
cotangent), taken inside the backward pass as `vgrun.probes.layers.tap` takes its norm: the
distribution of delta = dL/dz, which exists nowhere else.

On a CPU that flushes subnormals to zero (XLA's default), a subnormal entry counts as a zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

PER_DECADE = 2  # bins per decade of |x|
LOW, HIGH = -324, 309  # log10 |x| range: every nonzero finite float64 falls inside
N_BINS = (HIGH - LOW) * PER_DECADE
ZEROS, NONFINITE = N_BINS, N_BINS + 1  # the two extra counts after the bins
N_COUNTS = N_BINS + 2


def edges() -> np.ndarray:
    """The N_BINS + 1 bin edges in log10 |x|: bin k holds LOW + k / PER_DECADE <= log10|x| < the next."""
    return LOW + np.arange(N_BINS + 1) / PER_DECADE


def log_histogram(x: jax.Array, dtype=None) -> jax.Array:
    """[N_COUNTS] counts of x's entries: N_BINS bins of log10 |x|, then exact zeros, then inf/NaN."""
    x = jnp.ravel(x)
    dtype = dtype or (x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32)
    a = jnp.abs(x)
    finite = jnp.isfinite(x)
    nonzero = finite & (a > 0)
    # log10 of a float32 is computed in float32: bins at half-decade edges are right to ~1e-6 decades
    lg = jnp.log10(jnp.where(nonzero, a, 1))
    k = jnp.clip(jnp.floor((lg - LOW) * PER_DECADE).astype(jnp.int32), 0, N_BINS - 1)
    k = jnp.where(nonzero, k, jnp.where(finite, ZEROS, NONFINITE))
    return jnp.zeros((N_COUNTS,), dtype).at[k].add(1)


@jax.custom_vjp
def hist_tap(x: jax.Array, probe: jax.Array) -> jax.Array:
    """Identity on x; the gradient with respect to `probe` [N_COUNTS] is `log_histogram` of x's cotangent."""
    return x


def _fwd(x, probe):
    return x, None


def _bwd(_, g):
    return g, log_histogram(g, g.dtype)


hist_tap.defvjp(_fwd, _bwd)


def probe(dtype=jnp.float32) -> jax.Array:
    """A zero probe for `hist_tap`."""
    return jnp.zeros((N_COUNTS,), dtype)
