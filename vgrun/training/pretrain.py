"""Greedy layer-wise pretraining of an MLP's hidden layers, before fine-tuning by backprop.

    pretrain=autoencoder  Bengio, Lamblin, Popovici & Larochelle (2007): hidden layer l is the
                          encoder h = phi(v W_l + b_l) of an autoencoder with tied weights and a
                          linear decoder r = h W_l^T + c, trained by SGD on the squared error
                          |r - v|^2 (mean over batch and units) to reconstruct v, the representation
                          of the training inputs by the (already pretrained) layers below,
                          standardized per unit (`input_map`; folded back into the layer after).
    pretrain=rbm          Hinton, Osindero & Teh (2006): layer l is a Bernoulli RBM (visible v,
                          hidden P(h=1|v) = sigmoid(v W_l + b_l), P(v=1|h) = sigmoid(h W_l^T + c))
                          trained by CD-k (`cd_k`); the next RBM sees the hidden probabilities.

Only the training inputs are used (no labels). The output layer keeps its initialisation;
fine-tuning is the usual training loop (`vgrun.training.loop`). Each layer is one jitted
`lax.scan` of `pretrain.steps` updates on minibatches of `pretrain.batch_size`; layers of
equal shape share one compiled program.

RBM visible units are Bernoulli, so the first RBM needs inputs in [0, 1]. Inputs already
in [0, 1] (data=digits: pixel / 16) are used as they are, read as probabilities (Hinton
2010, sec. 13.2). Other inputs are mapped to [0, 1] per feature by the training set's
min and max, v = (x - lo) / span, and after pretraining that map is folded into the first
layer exactly (W_0 <- W_0 / span, b_0 <- b_0 - (lo / span) W_0), so the fine-tuned
network reads the raw inputs. A Gaussian-Bernoulli first layer would avoid the map but
needs its own, smaller learning rate; min-max is the simpler documented choice.

Diagnostics (`PretrainLog`): the reconstruction error of each layer every `log_every`
updates (autoencoder: its loss; rbm: the squared error of the one-step mean-field
reconstruction, the number Hinton 2010, sec. 5, suggests watching), and the supervised
per-layer trace (|delta_l|, |dL/dW_l|, ...) of the whole network on one fixed batch
before each layer is pretrained (point 0: the random initialisation); the point after the
last layer is fine-tuning's step 0.
"""

from __future__ import annotations

import time
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vgrun.nn import make_model
from vgrun.training import optim
from vgrun.nn.activations import ACTIVATIONS
from vgrun.probes.supervised import supervised_trace
from vgrun.probes.layers import Trace


class PretrainLog(NamedTuple):
    recon: np.ndarray  # [depth, steps // log_every]: layer l's reconstruction error, window means
    traces: Trace  # fields [depth, depth + 1]: the supervised trace before layer l is pretrained
    loss: np.ndarray  # [depth]: the supervised loss on the fixed batch at those points
    steps: int  # updates per layer
    log_every: int
    seconds: float


def ae_loss(layer: dict, v: jax.Array, act) -> jax.Array:
    """Squared reconstruction error (mean over batch and units) of the tied autoencoder.

    layer: w [n_v, n_h], b [n_h], c [n_v]; v: [B, n_v]."""
    h = act(v @ layer["w"] + layer["b"])
    r = h @ layer["w"].T + layer["c"]
    return jnp.mean(jnp.square(r - v))


def bernoulli(key, p: jax.Array) -> jax.Array:
    """A sample of independent Bernoulli(p) units: 1 where a uniform draw falls below p."""
    return (jax.random.uniform(key, p.shape, p.dtype) < p).astype(p.dtype)


def cd_k(layer: dict, v0: jax.Array, key, k: int):
    """The CD-k estimate of the log-likelihood gradient of a Bernoulli RBM, and the
    one-step reconstruction error.

    layer: w [n_v, n_h], b [n_h] (hidden bias), c [n_v] (visible bias); v0: [B, n_v] in [0, 1].
    Gibbs chain (Hinton 2010, sec. 3): h_0 ~ P(h|v_0); for i = 1..k: v_i = P(v=1|h_{i-1})
    (probabilities, not samples), then h_i ~ P(h|v_i) (sampled with key i, used only if i < k).
    Positive statistics <v h>_0 = v_0^T P(h|v_0) / B, negative <v h>_k = v_k^T P(h|v_k) / B:
        dW = <v h>_0 - <v h>_k,  db = mean(P(h|v_0) - P(h|v_k)),  dc = mean(v_0 - v_k).
    Hidden sample i uses uniform draws from jax.random.split(key, k)[i].
    """
    w, b, c = layer["w"], layer["b"], layer["c"]
    keys = jax.random.split(key, k)
    ph0 = jax.nn.sigmoid(v0 @ w + b)
    ph, v, v1 = ph0, v0, None
    for i in range(k):
        h = bernoulli(keys[i], ph)
        v = jax.nn.sigmoid(h @ w.T + c)
        ph = jax.nn.sigmoid(v @ w + b)
        v1 = v if v1 is None else v1
    batch = v0.shape[0]
    grads = {"w": (v0.T @ ph0 - v.T @ ph) / batch, "b": jnp.mean(ph0 - ph, 0), "c": jnp.mean(v0 - v, 0)}
    return grads, jnp.mean(jnp.square(v0 - v1))


@partial(jax.jit, static_argnames=("kind", "act_name", "steps", "batch", "k", "log_every"))
def train_layer(layer: dict, data: jax.Array, key, lr, *, kind: str, act_name: str, steps: int, batch: int, k: int,
                log_every: int):
    """`steps` updates of one layer on minibatches of `data` [N, n_v]: (layer, errors [steps // log_every])."""
    act = ACTIVATIONS[act_name].fn

    def update(layer, i):
        key_i = jax.random.fold_in(key, i)
        v = data[jax.random.randint(key_i, (batch,), 0, data.shape[0])]
        if kind == "autoencoder":  # gradient descent on the reconstruction error
            err, g = jax.value_and_grad(ae_loss)(layer, v, act)
            return jax.tree_util.tree_map(lambda p, d: p - lr * d, layer, g), err
        g, err = cd_k(layer, v, jax.random.fold_in(key_i, 1), k)  # CD ascends the likelihood
        return jax.tree_util.tree_map(lambda p, d: p + lr * d, layer, g), err

    layer, errs = jax.lax.scan(update, layer, jnp.arange(steps))
    return layer, errs.reshape(-1, log_every).mean(1)


def _get(params: dict, l: int) -> dict:
    if l == 0:
        return {"w": params["inp"]["w"], "b": params["inp"]["b"]}
    return {"w": params["hid"]["w"][l - 1], "b": params["hid"]["b"][l - 1]}


def _set(params: dict, l: int, w, b) -> dict:
    params = jax.tree_util.tree_map(lambda v: v, params)  # a fresh tree (the leaves are immutable)
    if l == 0:
        params["inp"] = {**params["inp"], "w": w, "b": b}
    else:
        hid = params["hid"]
        params["hid"] = {**hid, "w": hid["w"].at[l - 1].set(w), "b": hid["b"].at[l - 1].set(b)}
    return params


def visible_map(x: np.ndarray):
    """(lo, span) with (x - lo) / span in [0, 1]: identity for inputs already in [0, 1], else per-feature min-max."""
    if x.min() >= 0 and x.max() <= 1:
        return np.zeros(x.shape[1], x.dtype), np.ones(x.shape[1], x.dtype)
    lo, hi = x.min(0), x.max(0)
    return lo, np.where(hi > lo, hi - lo, 1).astype(x.dtype)


def input_map(kind: str, l: int, h: np.ndarray):
    """(lo, span): what layer l pretrains on is v = (h - lo) / span, h its input [N, n_v].

    rbm: the first layer's inputs mapped to [0, 1] (`visible_map`); upper layers see the
    hidden probabilities of the one below as they are. autoencoder: every layer's input
    standardized per unit (mean 0, std 1 over the training set; a unit with std below
    MIN_STD is only centred), so the squared error is the unexplained share of each unit's
    variance: without it a deep sigmoid stack whose representation has collapsed toward a
    constant is "reconstructed" by the decoder bias alone (measured: error 8e-14 at layer 9
    of 10, and fine-tuning as stuck as from the random init).
    """
    if kind == "rbm":
        return visible_map(h) if l == 0 else (np.zeros(h.shape[1], h.dtype), np.ones(h.shape[1], h.dtype))
    sd = h.std(0)
    return h.mean(0), np.where(sd > MIN_STD, sd, 1).astype(h.dtype)


MIN_STD = 1e-6


def fold_visible_map(w, b, lo, span):
    """(W', b') with x W' + b' = v W + b for v = (x - lo) / span: the first layer on raw inputs."""
    return w / span[:, None], b - (lo / span) @ w


def pretrain(cfg, problem, params: dict, state: dict, key):
    """Pretrain the hidden layers of mlp `params` greedily: (params, PretrainLog)."""
    t0 = time.perf_counter()
    p = cfg.pretrain
    act = ACTIVATIONS[cfg.act].fn
    model = make_model(cfg, problem, cfg.diagnosis.sat_tol)
    x = problem.arrays["x"]
    xb, yb = problem.sample(jax.random.fold_in(key, 10**6), problem.arrays, cfg.batch_size)  # the fixed batch
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    recon, traces, losses = [], [], []
    h = x  # layer l's input (the representation of the training inputs by the layers below)
    trace_at = jax.jit(lambda params: supervised_trace(model, problem, params, state, xb, yb, zeros, cfg.batch_size))
    for l in range(cfg.depth):
        loss, _, trace, _ = trace_at(params)
        traces.append(trace._replace(update_ratio=jnp.full_like(trace.update_ratio, jnp.nan)))
        losses.append(loss)
        lo, span = input_map(p.name, l, np.asarray(h))
        v = (h - lo) / span
        layer = {**_get(params, l), "c": jnp.zeros((h.shape[1],), h.dtype)}
        layer, errs = train_layer(layer, v, jax.random.fold_in(key, l), p.lr, kind=p.name, act_name=cfg.act,
                                  steps=p.steps, batch=p.batch_size, k=p.k, log_every=p.log_every)
        recon.append(errs)
        w, b = fold_visible_map(layer["w"], layer["b"], lo, span)  # the layer on h itself: h W' + b' = v W + b
        h = act(h @ w + b)  # the next layer's data (rbm: the hidden probabilities, as act = sigmoid)
        params = _set(params, l, w, b)
    traces = Trace(*(np.stack([np.asarray(getattr(t, f)) for t in traces]) for f in Trace._fields))
    log = PretrainLog(np.stack([np.asarray(e) for e in recon]), traces, np.asarray(losses), p.steps, p.log_every,
                      time.perf_counter() - t0)
    return params, log


def apply(cfg, problem, carry):
    """train.run's hook: pretrain carry.params, restart the optimizer state on them: (carry, PretrainLog)."""
    key = jax.random.fold_in(carry.key, 2**20)  # independent of the fine-tuning batches
    params, log = pretrain(cfg, problem, carry.params, carry.state, key)
    opt_state = optim.make(cfg.optimizer, cfg.steps).init(params)
    return carry._replace(params=params, opt_state=opt_state), log


def apply_members(cfg, problem, carry, n: int):
    """apply() to each of n members (n > 1: a leading member axis on every leaf): (carry, [PretrainLog] * n)."""
    if n == 1:
        carry, log = apply(cfg, problem, carry)
        return carry, [log]
    out = [apply(cfg, problem, jax.tree_util.tree_map(lambda v, i=i: v[i], carry)) for i in range(n)]
    stacked = jax.tree_util.tree_map(lambda *v: jnp.stack(v), *(c for c, _ in out))
    return stacked, [log for _, log in out]


def summary(log: PretrainLog) -> dict:
    """The numbers for summary.json: per-layer reconstruction error first and last, delta before and after."""
    d = log.traces.delta  # [depth, depth + 1]
    depth = d.shape[0]
    return {
        "seconds": log.seconds,
        "steps_per_layer": log.steps,
        "recon_first": log.recon[:, 0].tolist(),
        "recon_last": log.recon[:, -1].tolist(),
        "delta_ratio_random_init": float(d[0, 0] / d[0, depth - 1]),  # |delta_first| / |delta_last hidden|
        "loss_random_init": float(log.loss[0]),
    }


def summary_line(cfg, s: dict) -> str:
    """One line for the terminal from summary(): what pretraining did and the gradient ratio it started from."""
    first, last = s["recon_first"], s["recon_last"]
    return (f"pretrain={cfg.pretrain.name}: {len(first)} layers x {s['steps_per_layer']} updates in {s['seconds']:.1f} s; "
            f"reconstruction error layer 0 {first[0]:.3g} -> {last[0]:.3g}, layer {len(first) - 1} "
            f"{first[-1]:.3g} -> {last[-1]:.3g}; |delta_first| / |delta_last| at the random init "
            f"{s['delta_ratio_random_init']:.2e} (fine-tuning's step 0: the diagnosis above)")
