"""Doya (1993)'s one-neuron recurrent network: exploding gradients at a bifurcation.

    x_{t+1} = (1 - eps) x_t + eps sigmoid(w x_t + b) + eps w_in u_t      (u = 0 here)

Fixed points solve x = sigmoid(w x + b), i.e. b(x) = ln(x / (1 - x)) - w x for x in
(0, 1). The map's slope there is 1 - eps + eps w x(1-x), so a fixed point is stable iff
w x(1-x) < 1. For w > 4 the branch folds back at w x(1-x) = 1, x = (1 -+ sqrt(1 - 4/w))/2
(saddle-node points): for b between the folds there are two stable states separated by
an unstable one, the network is bistable (for w = 5: b in (-2.656, -2.344)).

Learning b to hit a target x(T) from x(0) = x0 meets a cliff where the unstable point
crosses x0 (b_c = ln(x0/(1-x0)) - w x0, -2.5 for x0 = 0.5, w = 5): there x(T) switches
basin, the loss L(b) = (target - x(T))^2 jumps, and dL/db is the sensitivity of a
trajectory sitting on an unstable point, growing like (1 - eps + eps w x0(1-x0))^T.
Away from the cliff and the folds x(T) settles on x*(b) and dx/db is the implicit-function
value (1/(x*(1-x*)) - w)^(-1): the gradient is tame there and explodes only at the cliff.

Everything runs in float64 (`jax.enable_x64`), jitted, vectorised over the b grid. This
module imports JAX: import it after the config is validated.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

SETTLE = 5000  # steps to settle on an attractor: slope^SETTLE < 1e-80 at the cliff's branches
N_STARTS = 12  # initial states 0, 1/11, ..., 1 for the numerical bistability check
# (an even count leaves out 1/2, which at b = -w/2 sits on the unstable point forever)
PROBE = 0.01  # the loss "just above / below" the cliff is read at b_c +- PROBE
N_BISECT = 60  # halvings of one grid step: the cliff to float64 resolution
WALL_FACTOR = 100.0  # a GD step hits the wall when |dL/db| > WALL_FACTOR |dL/db at step 0|
PARAMS = ("w", "eps", "x0", "target", "horizon", "b_min", "b_max", "gd_b0", "gd_lr", "gd_steps")


def b_of_x(x, w):
    """The bias for which x is a fixed point: b = ln(x/(1-x)) - w x (numpy, any shape)."""
    return np.log(x / (1 - x)) - w * x


def folds(w: float):
    """Saddle-node points ((x_lo, x_hi), (b_lo, b_hi)) for w > 4, else None."""
    if w <= 4:
        return None
    r = math.sqrt(1 - 4 / w)
    x_lo, x_hi = (1 - r) / 2, (1 + r) / 2
    return (x_lo, x_hi), (float(b_of_x(x_hi, w)), float(b_of_x(x_lo, w)))  # b decreases through the fold band


@partial(jax.jit, static_argnames="T")
def final_state(b, x0, w, eps, T):
    """x(T) from x(0) = x0 with u = 0; b and x0 broadcast against each other."""
    b, x0 = jnp.broadcast_arrays(jnp.asarray(b, float), jnp.asarray(x0, float))
    step = lambda x, _: ((1 - eps) * x + eps * jax.nn.sigmoid(w * x + b), None)  # noqa: E731
    return jax.lax.scan(step, x0, None, length=T)[0]


def loss(b, x0, target, w, eps, T):
    return (target - final_state(b, x0, w, eps, T)) ** 2


@partial(jax.jit, static_argnames="T")
def loss_and_grad(bs, x0, target, w, eps, T):
    """L(b) and dL/db (autodiff through the T-step scan) for each b in bs, shape (n,)."""
    return jax.vmap(jax.value_and_grad(loss), in_axes=(0, None, None, None, None, None))(bs, x0, target, w, eps, T)


@partial(jax.jit, static_argnames="T")
def dx_db(bs, starts, w, eps, T):
    """(x(T), dx(T)/db) per (b, start) pair, shape (n,) each."""
    f = jax.value_and_grad(lambda b, s: final_state(b, s, w, eps, T))
    return jax.vmap(f)(bs, starts)


@partial(jax.jit, static_argnames="T")
def bisect(lo, hi, x0, w, eps, T):
    """The b in [lo, hi] where x(T) crosses 1/2 (upper branch above, lower below)."""
    upper = lambda b: final_state(b, x0, w, eps, T) > 0.5  # noqa: E731 - branches lie either side of 1/2
    up_lo = upper(lo)

    def halve(_, bracket):
        lo, hi = bracket
        mid = (lo + hi) / 2
        same = upper(mid) == up_lo
        return jnp.where(same, mid, lo), jnp.where(same, hi, mid)

    lo, hi = jax.lax.fori_loop(0, N_BISECT, halve, (jnp.asarray(lo, float), jnp.asarray(hi, float)))
    return (lo + hi) / 2


@partial(jax.jit, static_argnames=("T", "steps"))
def descend(b0, lr, x0, target, w, eps, T, steps):
    """Plain gradient descent on b: (b, L, dL/db) before each of steps + 1 updates."""
    vg = jax.value_and_grad(loss)

    def step(b, _):
        l, g = vg(b, x0, target, w, eps, T)
        return b - lr * g, (b, l, g)

    return jax.lax.scan(step, jnp.asarray(b0, float), None, length=steps + 1)[1]


def _check_points(w, fold):
    """(b, start) pairs that settle on stable branches away from the folds (both branches mid-band)."""
    if fold is None:
        return [(-w / 2 - 1, 0.5), (-w / 2, 0.5), (-w / 2 + 1, 0.5)]
    b_lo, b_hi = fold[1]
    mid = (b_lo + b_hi) / 2
    return [(b_lo - 0.5, 0.0), (mid, 0.0), (mid, 1.0), (b_hi + 0.5, 1.0)]


def _cliff(d, b_grid, x_end, fold):
    """Where x(T) changes branch: bisection inside the grid step where it crosses 1/2."""
    up = np.asarray(x_end) > 0.5
    flips = np.nonzero(up[1:] != up[:-1])[0]
    if fold is None or flips.size == 0:
        return None
    i = int(flips[0])
    b_c = float(bisect(b_grid[i], b_grid[i + 1], d.x0, d.w, d.eps, d.horizon))
    (x_lo, x_hi), (b_lo, b_hi) = fold
    # where the unstable point crosses x0; outside the fold band the basin switches at a fold
    analytic = float(b_of_x(d.x0, d.w)) if x_lo < d.x0 < x_hi else (b_lo if d.x0 >= x_hi else b_hi)
    l_pm, _ = loss_and_grad(np.array([b_c + PROBE, b_c - PROBE]), d.x0, d.target, d.w, d.eps, d.horizon)
    x_branch = final_state(b_c, np.array([0.0, 1.0]), d.w, d.eps, SETTLE)  # settled lower, upper
    out = {"b": b_c, "b_analytic": analytic, "loss_above": float(l_pm[0]), "loss_below": float(l_pm[1]),
           "x_lower": float(x_branch[0]), "x_upper": float(x_branch[1]),
           # the jump at the cliff itself: the loss on the settled branch the state falls to, and the other
           "loss_lower_branch": float((d.target - x_branch[0]) ** 2),
           "loss_upper_branch": float((d.target - x_branch[1]) ** 2), "grad": None, "grad_analytic": None}
    if x_lo < d.x0 < x_hi:
        # at b_c the state sits on the unstable point, x_t = x0, so the sensitivity s_t = dx_t/db
        # obeys s_{t+1} = lam s_t + eps x0(1-x0): a geometric series with ratio lam > 1
        s, lam = d.x0 * (1 - d.x0), 1 - d.eps + d.eps * d.w * d.x0 * (1 - d.x0)
        out["grad_analytic"] = -2 * (d.target - d.x0) * s * (lam**d.horizon - 1) / (d.w * s - 1)
        out["grad"] = float(loss_and_grad(np.array([analytic]), d.x0, d.target, d.w, d.eps, d.horizon)[1][0])
    return out


def _wall(b, l, g, b_c):
    """The first update whose gradient spikes or that carries b across the cliff."""
    spike = np.abs(g[:-1]) > WALL_FACTOR * abs(g[0])
    cross = np.zeros_like(spike) if b_c is None else np.sign(b[1:] - b_c) != np.sign(b[:-1] - b_c)
    hits = np.nonzero(spike | cross)[0]
    if hits.size == 0:
        return {"hit": False, "grad0": float(g[0])}
    k = int(hits[0])
    return {"hit": True, "step": k, "b": float(b[k]), "grad": float(g[k]), "grad0": float(g[0]),
            "spike": bool(spike[k]), "crossed": bool(cross[k]), "loss_before": float(l[k]),
            "b_after": float(b[k + 1]), "loss_after": float(l[k + 1]), "grad_after": float(g[k + 1]),
            "loss_max_after": float(l[k + 1:].max()), "events": int((spike | cross).sum())}


class Stopped(Exception):
    """should_stop() became true between two parts of the analysis; `done` of 4 were finished."""

    def __init__(self, done: int):
        super().__init__(f"stopped after part {done} of 4")
        self.done = done


def analyze(d, should_stop=lambda: False) -> dict:
    """Bifurcation, loss landscape, dx/db check and gradient descent for a `DoyaConfig` d.

    Returns JSON-able numbers; the arrays for the picture are under "arrays" (numpy). Between
    its four parts, raises Stopped when should_stop() (SIGINT, SIGTERM).
    """

    def check(done: int) -> None:
        if should_stop():
            raise Stopped(done)

    with jax.enable_x64(True):
        b_grid = np.linspace(d.b_min, d.b_max, d.n_b)
        fold = folds(d.w)
        # 1. attractors reached from N_STARTS initial states, shape (N_STARTS, n_b)
        ends = np.asarray(final_state(b_grid[None, :], np.linspace(0, 1, N_STARTS)[:, None], d.w, d.eps, SETTLE))
        both = (ends.min(0) < 0.5) & (ends.max(0) > 0.5)  # some starts end on each branch
        residual = np.abs(ends - 1 / (1 + np.exp(-(d.w * ends + b_grid)))).max()
        check(1)
        # 2. the loss landscape at the training horizon T
        loss_g, grad_g = (np.asarray(a) for a in loss_and_grad(b_grid, d.x0, d.target, d.w, d.eps, d.horizon))
        x_end = np.asarray(final_state(b_grid, d.x0, d.w, d.eps, d.horizon))
        cliff = _cliff(d, b_grid, x_end, fold)
        i_max = int(np.argmax(np.abs(grad_g)))
        check(2)
        # 3. dx/db on settled branches, autodiff against the implicit-function theorem
        pts = np.array(_check_points(d.w, fold))
        xs, ad = (np.asarray(a) for a in dx_db(pts[:, 0], pts[:, 1], d.w, d.eps, SETTLE))
        exact = 1 / (1 / (xs * (1 - xs)) - d.w)
        check(3)
        rows = [{"b": float(b), "branch": "upper" if x > 0.5 else "lower", "x": float(x), "autodiff": float(a),
                 "analytic": float(e), "fp_residual": float(abs(b - b_of_x(x, d.w)))}
                for b, x, a, e in zip(pts[:, 0], xs, ad, exact)]
        # 4. gradient descent on b
        traj = descend(d.gd_b0, d.gd_lr, d.x0, d.target, d.w, d.eps, d.horizon, d.gd_steps)
        gb, gl, gg = (np.asarray(a) for a in traj)
    bistable = None
    if fold is not None:
        bistable = {"b_lo": fold[1][0], "b_hi": fold[1][1], "x_fold": list(fold[0]),
                    "b_lo_numeric": float(b_grid[both].min()) if both.any() else None,
                    "b_hi_numeric": float(b_grid[both].max()) if both.any() else None}
    return {
        "params": {k: getattr(d, k) for k in PARAMS},  # what the picture and the lines need
        "bistable": bistable,
        "settled_residual": float(residual),  # max |x - sigmoid(w x + b)| over the settled ends
        "cliff": cliff,
        "max_grad": {"abs": float(abs(grad_g[i_max])), "b": float(b_grid[i_max]), "grid_step": float(b_grid[1] - b_grid[0])},
        "dxdb": {"rows": rows, "max_rel_err": float(np.max(np.abs(ad - exact) / np.abs(exact)))},
        "gd": {**_wall(gb, gl, gg, cliff and cliff["b"]), "final_b": float(gb[-1]), "final_loss": float(gl[-1])},
        "arrays": {"b": b_grid, "loss": loss_g, "grad": grad_g, "x_end": x_end, "ends": ends,
                   "gd_b": gb, "gd_loss": gl, "gd_grad": gg},
    }


def summary_lines(s: dict) -> list[str]:
    """A few human-readable lines of the key numbers."""
    bi, c, m, g = s["bistable"], s["cliff"], s["max_grad"], s["gd"]
    if bi:
        sim = "none" if bi["b_lo_numeric"] is None else f"[{bi['b_lo_numeric']:.4f}, {bi['b_hi_numeric']:.4f}]"
        out = [f"bistable for b in ({bi['b_lo']:.4f}, {bi['b_hi']:.4f}), folds at x = {bi['x_fold'][0]:.4f}, "
               f"{bi['x_fold'][1]:.4f}; simulated from {N_STARTS} starts: {sim}"]
    else:
        out = ["not bistable (w <= 4): one stable fixed point for every b, no cliff"]
    if c:
        out.append(f"cliff at b = {c['b']:.10f} (analytic {c['b_analytic']:.10f}): on its settled branches the loss "
                   f"jumps from {c['loss_upper_branch']:.3g} to {c['loss_lower_branch']:.3g}; x(T) gives "
                   f"{c['loss_above']:.3g} at b + {PROBE}, {c['loss_below']:.3g} at b - {PROBE}")
    at_cliff = f"; at the cliff {c['grad']:.6g} (closed form {c['grad_analytic']:.6g})" if c and c["grad"] else ""
    out.append(f"max |dL/db| on the grid = {m['abs']:.4g} at b = {m['b']:.4f}{at_cliff}")
    out.append(f"dx/db at settled fixed points, autodiff vs (1/(x(1-x)) - w)^-1: "
               f"max relative error {s['dxdb']['max_rel_err']:.1e}")
    if g["hit"]:
        how = "the update crosses the cliff" if g["crossed"] else f"|dL/db| > {WALL_FACTOR:g}x its initial {g['grad0']:.3g}"
        out.append(f"gradient descent hits the wall at step {g['step']} ({how}): b {g['b']:.5f} -> {g['b_after']:.5f}, "
                   f"dL/db {g['grad']:.4g} -> {g['grad_after']:.4g}, loss {g['loss_before']:.3g} -> {g['loss_after']:.3g}")
    else:
        out.append(f"gradient descent never hits the wall: b -> {g['final_b']:.4f}, loss {g['final_loss']:.3g}")
    return out


def summary(analysis: dict) -> dict:
    """The JSON-able part of `analyze`'s result (without the picture's arrays)."""
    return {k: v for k, v in analysis.items() if k != "arrays"}
