"""Multi-layer perceptron with stacked hidden layers; `resmlp` adds residual blocks.

    h_0 = phi(N(x W_0 + b_0))                           input layer, d_in -> width
    h_l = phi(N(h_{l-1} W_l + b_l))                     mlp,    l = 1 .. depth-1
    h_l = h_{l-1} + alpha * phi(N(h_{l-1} W_l + b_l))   resmlp, l = 1 .. depth-1
    y   = h_{depth-1} W_out + b_out

With `model.block=two` a residual block is He et al. (2016)'s, two layers with the addition
before the second activation: a = phi(N(h W_l + b_l)), h' = phi(h + alpha * N(a W_{l+1} + b_{l+1})),
for l = 1, 3, .., depth-2 (depth odd); the stream is tapped at each block's output and, for
the block's first layer, at its input (the previous block's output).

N is the normalization (none, batchnorm, layernorm). Layers 1..depth-1 are stacked
(`W: [depth-1, width, width]`) and applied with `lax.scan`. A rolled scan keeps compile
time flat in depth but runs slower per step than straight-line code; full unrolling
(`unroll=depth-1`) runs fastest but compiles longer with every layer; partial unrolling
runs slower than both on XLA CPU. So stacks of up to `FULL_UNROLL_DEPTH` layers are
unrolled in training and deeper ones scanned (benchmarks/bench_unroll.py; timings in
benchmarks/README.md); the held-out evaluation (train=False) is always scanned rolled:
it runs once per chunk, and rolled it compiles faster and runs no slower.

`probes` ({"hid": {"z"[, "w"][, "h"]}: [depth] each, "out": {"z"[, "w"]}: scalars}) are zero
scalars tapped onto every pre-activation z_l (in a rolled stack, weight W_l; in a residual
network, the stream h_l at each block's output, layer 0's output included)
(`vgrun.probes.layers.tap`): the gradient of the loss with respect to a probe is the norm of the
gradient flowing through what it taps, |dL/dz_l| (over the batch), |dL/dW_l|, taken inside
the backward pass while the layer is in cache. |dL/dz_l| exists nowhere else. The weight
gradients of an unrolled stack, and all bias gradients, are measured afterwards on the
stacked gradient (`vgrun.probes.layers.trace_step`): there one norm over the stack, with one
exactness check, costs less than a tap per layer (benchmarks/bench_traces.py; timings in
benchmarks/README.md); in a rolled stack, where the first layers' gradients vanish below
the one-pass range, the taps cost less.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vgrun.nn.activations import ACTIVATIONS
from vgrun.nn.inits import init_many
from vgrun.nn.model import Model
from vgrun.nn.norm import normalize
from vgrun.probes.layers import safe_norm, tap

FULL_UNROLL_DEPTH = 20  # deeper stacks are scanned rolled; see benchmarks/bench_unroll.py


def make(cfg, d_in: int, d_out: int, dtype, sat_tol: float) -> Model:
    """The mlp or resmlp of cfg: x [B, d_in] -> y [B, d_out] (see `vgrun.nn.model.Model`)."""
    act = ACTIVATIONS[cfg.act]
    depth, width, icfg, norm = cfg.depth, cfg.width, cfg.init, cfg.norm
    residual = cfg.model.name == "resmlp"
    paired = residual and cfg.model.block == "two"  # He et al. 2016's two-layer block
    alpha = cfg.model.res_scale
    sat_level = sat_tol * act.peak
    unrolled = depth <= FULL_UNROLL_DEPTH  # training applies the hidden stack as straight-line code

    def init(key):
        k = jax.random.split(key, 6)
        shapes = {"inp": (d_in, width), "hid": (depth - 1, width, width), "out": (width, d_out)}
        requests = []
        for j, shape in enumerate(shapes.values()):  # a weight (..., fan_in, fan_out), its bias (..., fan_out)
            requests += [(k[2 * j], shape, "weight"), (k[2 * j + 1], shape[:-2] + shape[-1:], "bias")]
        arrays = iter(init_many(requests, icfg, dtype))
        params = {name: {"w": next(arrays), "b": next(arrays)} for name in shapes}
        state = {"inp": (), "hid": ()}
        if norm != "none":
            for name, lead in (("inp", ()), ("hid", (depth - 1,))):
                params[name]["g"] = jnp.ones(lead + (width,), dtype)
                params[name]["beta"] = jnp.zeros(lead + (width,), dtype)
        if norm == "batchnorm":
            for name, lead in (("inp", ()), ("hid", (depth - 1,))):
                state[name] = (jnp.zeros(lead + (width,), dtype), jnp.ones(lead + (width,), dtype))
        return params, state

    def apply(params, state, x, probes=None, train=True, stats=False, rolled=False, keep=None, route=None):
        """keep: [depth - 1] ones and zeros over the hidden stack (layers 1 .. depth-1): a zero deletes that
        layer (its input passes on unchanged; with model.block=two, a block whose second layer's keep is 0).
        route (model.block=two): [blocks] of 0 (as built), 1 (the backward pass goes through the block's
        branch only) or 2 (through its skip connection only); the forward pass is unchanged. Both for
        lesion and path studies (vgrun.science.lesion); None: every layer, every path."""
        def linear(h, p, probe):
            if probe is None:
                return h @ p["w"] + p["b"]
            w = tap(p["w"], probe["w"]) if "w" in probe else p["w"]
            return tap(h @ w + p["b"], probe["z"])

        def layer(h, p, probe, st, skip):
            z = linear(h, p, probe)
            z, st = normalize(norm, z, p, st, train, cfg.bn_momentum)
            a = act.fn(z)
            out = h + alpha * a if skip else a
            if probe is not None and "h" in probe:  # the residual stream at the block's output
                out = tap(out, probe["h"])
            # saturated unit: slope below sat_level on every example of the batch (a dead
            # relu, a stuck sigmoid); half of a relu layer is off for any one example
            s = ()
            if stats:  # sums (divided once for all layers below) and |W_l|, while W_l is in cache
                saturated = jnp.all(jnp.abs(act.deriv(z)) < sat_level, 0)
                s = (jnp.sum(a), jnp.sum(a * a), jnp.sum(saturated.astype(a.dtype)), safe_norm(p["w"]))
            return out, st, s

        p_hid = p_out = p_in = None
        if probes is not None:
            p_in = jax.tree_util.tree_map(lambda v: v[0], probes["hid"])
            p_hid = jax.tree_util.tree_map(lambda v: v[1:], probes["hid"])
            p_out = probes["out"]
        h, st_in, s_in = layer(x, params["inp"], p_in, state["inp"], False)

        def body(h, xs):
            p, probe, st, k = xs
            out, st, s = layer(h, p, probe, st, residual)
            if k is not None:
                out = k * out + (1 - k) * h
            return out, (st, s)

        def pair(tree):  # [depth - 1, ...] -> [blocks, 2, ...]
            return jax.tree_util.tree_map(lambda v: v.reshape((v.shape[0] // 2, 2) + v.shape[1:]), tree)

        def unpair(tree):
            return jax.tree_util.tree_map(lambda v: v.reshape((v.shape[0] * 2,) + v.shape[2:]), tree)

        def block(h, xs):  # phi(h + alpha * N(phi(N(h W1 + b1)) W2 + b2))
            p, probe, st, k, r = xs
            h_in = h
            one = jax.tree_util.tree_map(lambda v: v[0], (p, probe, st))
            two = jax.tree_util.tree_map(lambda v: v[1], (p, probe, st))
            if one[1] is not None and "h" in one[1]:  # the first layer's stream: the block's input
                h = tap(h, one[1]["h"])
            a, st1, s1 = layer(h, one[0], None if one[1] is None else {n: v for n, v in one[1].items() if n != "h"},
                               one[2], False)
            z = linear(a, two[0], two[1])
            z, st2 = normalize(norm, z, two[0], two[2], train, cfg.bn_momentum)
            skip = h
            if r is not None:  # the gradient through the branch only (1) or the skip only (2)
                skip = jnp.where(r == 1, jax.lax.stop_gradient(h), h)
                z = jnp.where(r == 2, jax.lax.stop_gradient(z), z)
            pre = skip + alpha * z
            out = act.fn(pre)
            if k is not None:
                out = k[1] * out + (1 - k[1]) * h_in
            if two[1] is not None and "h" in two[1]:
                out = tap(out, two[1]["h"])
            s2 = ()
            if stats:
                saturated = jnp.all(jnp.abs(act.deriv(pre)) < sat_level, 0)
                s2 = (jnp.sum(out), jnp.sum(out * out), jnp.sum(saturated.astype(out.dtype)), safe_norm(two[0]["w"]))
            stack = lambda a, b: jax.tree_util.tree_map(lambda x, y: jnp.stack([x, y]), a, b)  # noqa: E731
            return out, (stack(st1, st2), stack(s1, s2) if stats else ())

        # evaluation (train=False, once per chunk) is scanned rolled: it compiles faster; see benchmarks/README.md
        unroll = max(1, depth - 1) if train and unrolled and not rolled else 1
        if paired:
            h, (st_hid, s_hid) = jax.lax.scan(block, h, (*pair((params["hid"], p_hid, state["hid"], keep)), route),
                                              unroll=max(1, unroll // 2))
            st_hid, s_hid = unpair(st_hid), unpair(s_hid)
        else:
            h, (st_hid, s_hid) = jax.lax.scan(body, h, (params["hid"], p_hid, state["hid"], keep), unroll=unroll)
        y = linear(h, params["out"], p_out)
        measured = {}
        if stats:  # [depth] each: activation mean, std, saturated share; |W_l|
            total, sq, sat, w_norm = (jnp.concatenate([a[None], b]) for a, b in zip(s_in, s_hid))
            mean, sq = total / (x.shape[0] * width), sq / (x.shape[0] * width)
            measured = {"act_mean": mean, "act_std": jnp.sqrt(jnp.maximum(sq - mean * mean, 0)),
                        "saturated": sat / width, "weight": w_norm}
        return y, {"inp": st_in, "hid": st_hid}, measured

    def probes():
        names = ("z",) if unrolled else ("z", "w")
        stream = ("h",) if residual else ()
        return {"hid": {k: jnp.zeros((depth,), dtype) for k in names + stream},
                "out": {k: jnp.zeros((), dtype) for k in names}}

    return Model(init, apply, probes, depth + 1, recurrent=False)
