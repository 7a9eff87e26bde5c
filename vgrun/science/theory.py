"""Mean-field predictions for deep random networks (Poole et al. 2016; Schoenholz et al. 2017).

For W_ij ~ N(0, sigma_w^2 / N) and b_i ~ N(0, sigma_b^2), the pre-activation variance
follows q_{l+1} = sigma_w^2 E[phi(sqrt(q_l) z)^2] + sigma_b^2 (z ~ N(0, 1)) to a fixed
point q*, and the back-propagated gradient's squared norm changes per layer by

    chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2],

so |delta_l| / |delta_{l+1}| -> sqrt(chi_1): gradients vanish (chi_1 < 1) or explode
(chi_1 > 1) with the depth scale xi = 1 / |ln chi_1| layers per e-fold of |delta|^2.

Gaussian expectations: Gauss-Hermite quadrature is exact for smooth integrands but
wrong by ~3% at the kinks of relu-like or hard_tanh derivatives, so we use the midpoint
rule on a dense grid over z in [-Z, Z] (error ~1e-4 at a kink, spectrally small for
smooth integrands). All in float64, in one jitted program: the plain iteration q <- F(q)
from q0, and where it has not converged after N_ITER steps, bisection. Near criticality
F'(q*) = chi_1 -> 1 and the iteration creeps: at the default job's tanh with
sigma_w^2 = 1, sigma_b^2 = 0 it falls like 1 / (2 l) towards q* = 0, so plain iteration
alone ends far from q* after many costly quadratures (see benchmarks/README.md). F rises
with q for every activation here (checked on q in [1e-6, 1e4]), so the iteration moves
monotonically towards the fixed point it will reach, and that point is bracketed
(falling: in [0, q], as F(0) >= 0; rising: in [q, hi], hi found by doubling) and
bisected to float64 rounding.
"""

from __future__ import annotations

import math
from functools import lru_cache

Z_MAX, N_GRID = 10.0, 40_000
Q_CAP = 1e30  # q beyond this: no finite fixed point (e.g. relu with sigma_w^2 > 2)
N_ITER = 1000  # plain fixed-point steps; then bisection (see above)
N_BISECT = 200  # halvings of the bracket: far below float64 rounding of any q* in (1e-30, Q_CAP)
TOL = 1e-13
RTOL = 1e-12  # a rising iteration's bracket ends where F(h) < (1 - RTOL) h


@lru_cache(maxsize=None)
def _solver(name: str):
    import jax
    import jax.numpy as jnp

    from vgrun.nn.activations import ACTIVATIONS

    act = ACTIVATIONS[name]

    @jax.jit
    def solve(sigma_w2, sigma_b2, q0):
        h = 2 * Z_MAX / N_GRID
        z = -Z_MAX + h * (jnp.arange(N_GRID, dtype=jnp.float64) + 0.5)
        w = jnp.exp(-0.5 * z * z)
        w = w / w.sum()
        expect = lambda f, q: jnp.sum(w * f(jnp.sqrt(q) * z))  # noqa: E731
        step = lambda q: jnp.minimum(sigma_w2 * expect(lambda x: act.fn(x) ** 2, q) + sigma_b2, Q_CAP)  # noqa: E731

        def cond(s):
            q, q_prev, i = s
            return (jnp.abs(q - q_prev) > TOL * jnp.maximum(1.0, q)) & (i < N_ITER) & (q < Q_CAP)

        def bisect(lo, hi):
            """The fixed point between lo (F(lo) >= lo) and hi (F(hi) < hi)."""
            def halve(_, b):
                lo, hi = b
                mid = 0.5 * (lo + hi)
                below = step(mid) >= mid
                return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

            lo, hi = jax.lax.fori_loop(0, N_BISECT, halve, (lo, hi))
            return jnp.where(step(lo) == lo, lo, 0.5 * (lo + hi))

        def creeping(q, q_prev):
            """The fixed point the unconverged iteration is heading for, past q."""
            def falling(q):  # F(0) >= 0, so [0, q] brackets it while F(q) < q
                return jnp.where(step(q) < q, bisect(jnp.zeros_like(q), q), q)

            def rising(q):
                # F(h) below h by more than the quadrature's rounding: else F(q) ~ q + c for large q
                # (relu at sigma_w^2 = 2 with a bias) has no finite fixed point, only rounding crossings
                hi = jax.lax.while_loop(lambda h: (step(h) >= h * (1 - RTOL)) & (h < Q_CAP), lambda h: 2 * h, 2 * q)
                return jnp.where(hi >= Q_CAP, Q_CAP, bisect(q, jnp.minimum(hi, Q_CAP)))

            return jax.lax.cond(q < q_prev, falling, rising, q)

        q, q_prev, _ = jax.lax.while_loop(cond, lambda s: (step(s[0]), s[0], s[2] + 1), (step(q0), q0, 1))
        settled = (jnp.abs(q - q_prev) <= TOL * jnp.maximum(1.0, q)) | (q >= Q_CAP)
        q = jax.lax.cond(settled, lambda q, _: q, creeping, q, q_prev)
        return q, sigma_w2 * expect(lambda x: act.deriv(x) ** 2, q)

    return solve


def predict(act: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> dict:
    """q*, chi_1, the per-layer gradient factor sqrt(chi_1) and the depth scale."""
    import jax

    with jax.enable_x64(True):
        q, chi = (float(v) for v in _solver(act)(float(sigma_w2), float(sigma_b2), float(q0)))
    return {
        "sigma_w2": float(sigma_w2),
        "sigma_b2": float(sigma_b2),
        "q_star": math.inf if q >= Q_CAP else q,
        "chi_1": chi,
        "factor": math.sqrt(chi),  # predicted |delta_l| / |delta_{l+1}|
        # critical (chi_1 = 1 to rounding): no exponential decay or growth
        "depth_scale": math.inf if chi == 0 or abs(math.log(chi)) < 1e-9 else 1 / abs(math.log(chi)),
    }


def q_star(act: str, sigma_w2: float, sigma_b2: float) -> float:
    return predict(act, sigma_w2, sigma_b2)["q_star"]


def chi_1(act: str, sigma_w2: float, sigma_b2: float) -> float:
    return predict(act, sigma_w2, sigma_b2)["chi_1"]


@lru_cache(maxsize=None)
def _moments(name: str):
    import jax
    import jax.numpy as jnp

    from vgrun.nn.activations import ACTIVATIONS

    act = ACTIVATIONS[name]

    @jax.jit
    def moments(q):
        h = 2 * Z_MAX / N_GRID
        z = -Z_MAX + h * (jnp.arange(N_GRID, dtype=jnp.float64) + 0.5)
        w = jnp.exp(-0.5 * z * z)
        w = w / w.sum()
        d2 = act.deriv(jnp.sqrt(q) * z) ** 2
        return jnp.sum(w * act.fn(jnp.sqrt(q) * z) ** 2), jnp.sum(w * d2), jnp.sum(w * d2 * d2)

    return moments


def isometry(act: str, sigma_w2: float, sigma_b2: float, layers: int, orthogonal: bool) -> dict:
    """The mean and variance of the squared singular values lambda of the input-output Jacobian
    J = D_L W_L ... D_1 W_1 of `layers` wide layers at initialization, the pre-activations at
    their fixed point q* (Pennington, Schoenholz & Ganguli 2017, eq. 10-16).

    In the limit of infinite width the layers' factors W_l^T D_l^2 W_l are free, and for free
    positive elements the mean multiplies and the relative variance Var / mean^2 adds:

        mean(lambda) = chi_1^L,   Var(lambda) / mean^2 = L (mu_2 / mu_1^2 - 1 + v_W),

    with mu_k = E[phi'(sqrt(q*) z)^(2k)], chi_1 = sigma_w^2 mu_1, and v_W the relative variance
    of W W^T's spectrum: 1 for Gaussian weights (Marchenko-Pastur at ratio 1), 0 for orthogonal
    ones (the paper's -s_1). So ReLU (mu_2 / mu_1^2 = 2) is never isometric, and tanh
    (mu_2 / mu_1^2 -> 1 as q* -> 0) is with orthogonal weights only."""
    import jax

    q = predict(act, sigma_w2, sigma_b2)["q_star"]
    with jax.enable_x64(True):
        _, mu1, mu2 = (float(v) for v in _moments(act)(float(q)))
    chi = sigma_w2 * mu1
    relative = mu2 / mu1**2 - 1 + (0.0 if orthogonal else 1.0)
    mean = chi**layers
    return {"q_star": q, "mu1": mu1, "mu2": mu2, "chi_1": chi, "layers": layers,
            "mean": mean, "var": mean**2 * layers * relative}


def critical_point(act: str, q: float) -> tuple[float, float]:
    """(sigma_w^2, sigma_b^2) that put q* at q with chi_1 = 1 (on the critical line)."""
    import jax

    with jax.enable_x64(True):
        f2, mu1, _ = (float(v) for v in _moments(act)(float(q)))
    sigma_w2 = 1 / mu1
    return sigma_w2, q - sigma_w2 * f2
