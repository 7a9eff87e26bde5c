"""Lesion study (Veit, Wilber & Belongie 2016): delete one layer or residual block of a trained
network at test time and measure the held-out accuracy.

A residual network behaves like an ensemble of many paths of different lengths: deleting
one block removes only the paths through it, and the accuracy drops a little. In a plain
network every path goes through every layer: deleting one leaves no path, and the accuracy
falls toward chance. Deleting passes a unit's input on unchanged (its output replaced by its
input; `vgrun.nn.mlp`'s `keep`). The units are the hidden stack's layers 1 .. depth-1 (the
input layer changes the width and cannot go), or with `model.block=two` its blocks. The
network is evaluated as trained (batch norm with its running statistics).
"""

from __future__ import annotations

import numpy as np


def measure(cfg, result) -> dict:
    """{"unit", "full_acc", "acc" (per deleted unit), "median_acc", "min_acc", "max_acc", "chance_acc"}
    on the held-out set, for a trained feed-forward `result` (vgrun.training.loop.Result)."""
    import jax
    import jax.numpy as jnp

    from vgrun.nn import make_model

    problem = result.problem
    model = make_model(cfg, problem, cfg.diagnosis.sat_tol)
    a = problem.arrays
    carry = result.carry
    n = cfg.depth - 1
    paired = cfg.model.name == "resmlp" and cfg.model.block == "two"
    units = n // 2 if paired else n
    dtype = jnp.dtype(cfg.dtype)
    masks = np.ones((units + 1, n))  # row 0: the whole network; row 1 + u: unit u deleted
    for u in range(units):
        if paired:
            masks[1 + u, 2 * u: 2 * u + 2] = 0
        else:
            masks[1 + u, u] = 0

    @jax.jit
    def accuracies(params, state, keep):
        def one(k):
            y, _, _ = model.apply(params, state, a["x_test"], train=False, keep=k)
            return problem.loss_and_acc(y, a["y_test"])[1]

        return jax.lax.map(one, keep)

    acc = np.asarray(accuracies(carry.params, carry.state, jnp.asarray(masks, dtype)), np.float64)
    y = np.asarray(a["y_test"])
    chance = float(np.bincount(y).max() / len(y)) if y.ndim == 1 else None
    lesioned = acc[1:]
    return {"unit": "block" if paired else "layer", "full_acc": float(acc[0]), "acc": lesioned.tolist(),
            "median_acc": float(np.median(lesioned)), "min_acc": float(lesioned.min()),
            "max_acc": float(lesioned.max()), "chance_acc": chance}


def paths(cfg, result, samples: int = 32, seed: int = 0) -> dict | None:
    """The gradient's distribution over path lengths (Veit et al. 2016, sec. 5, fig. 6), for a
    trained residual network of two-layer blocks: for each k of its n blocks, `samples` random
    sets of k blocks whose branches the backward pass goes through (the others: through their
    skip connections only); `grad` [n + 1] is the mean RMS over held-out examples of |dL_i/dx_i|
    at the network's input for one path of length k, `total` = C(n, k) * grad its share of the
    whole gradient (there are C(n, k) such paths), `peak` the k where `total` is largest.
    None for other networks."""
    import math

    import jax
    import jax.numpy as jnp

    from vgrun.nn import make_model

    if cfg.model.name != "resmlp" or cfg.model.block != "two":
        return None
    problem = result.problem
    model = make_model(cfg, problem, cfg.diagnosis.sat_tol)
    a = problem.arrays
    params, state = result.carry.params, result.carry.state
    n = (cfg.depth - 1) // 2
    rng = np.random.default_rng(seed)
    routes, ks = [], []
    for k in range(n + 1):
        for _ in range(samples if 0 < k < n else 1):  # k = 0 and k = n: one path each
            r = np.full(n, 2)
            r[rng.choice(n, size=k, replace=False)] = 1
            routes.append(r)
            ks.append(k)

    @jax.jit
    def input_gradients(route):
        def one(r):
            def loss(x):  # the sum over examples: its gradient at x_i is example i's own
                y, _, _ = model.apply(params, state, x, train=False, route=r)
                return problem.loss_and_acc(y, a["y_test"])[0] * x.shape[0]

            g = jax.grad(loss)(a["x_test"])
            return jnp.sqrt(jnp.mean(jnp.sum(g * g, axis=1)))

        return jax.lax.map(one, route)

    g = np.asarray(input_gradients(jnp.asarray(np.array(routes), jnp.int32)), np.float64)
    ks = np.array(ks)
    grad = [float(g[ks == k].mean()) for k in range(n + 1)]
    total = [math.comb(n, k) * grad[k] for k in range(n + 1)]
    return {"n_blocks": n, "samples": samples, "grad": grad, "count": [math.comb(n, k) for k in range(n + 1)],
            "total": total, "peak": int(np.argmax(total)), "peak_over_blocks": float(np.argmax(total) / n)}
