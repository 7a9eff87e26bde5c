"""Recurrent networks unrolled over time with `lax.scan`: rnn, lstm, gru.

    rnn, form=standard  h_t = phi(W h_{t-1} + U u_t + b)            (Elman)
    rnn, form=pascanu   x_t = W phi(x_{t-1}) + U u_t + b            (Pascanu et al. 2013, eq. 1;
                        the state is x_t, the layer's output phi(x_t))
    lstm                gates i, f, o (sigmoid), candidate g (tanh); c_t = f c_{t-1} + i g,
                        h_t = o tanh(c_t); forget-gate bias `forget_bias` (Gers et al. 2000)
    gru                 Cho et al. 2014: h_t = (1 - z) h_{t-1} + z tanh(U u_t + r * (W h_{t-1}) + b)

`depth` stacks layers (layer l reads layer l-1's outputs). The input projection
U u_t + b of a whole sequence is one matmul outside the time scan; only the recurrent
matmul is inside it. Each cell's time scan has its backward pass written out (`scans`);
on traced steps it also measures, inside the reverse scan, |dL/dh_t| (BPTT, without hooks)
and |v^T dh_{T-1}/dh_t| at every time step (`probes`: zero taps).
The output is the readout of the last `n_out_steps` steps of the top layer.
"""

from __future__ import annotations

import math
import jax
import jax.numpy as jnp
import numpy as np

from vgrun.nn.activations import ACTIVATIONS
from vgrun.nn.inits import after, init_many
from vgrun.nn.model import Model
from vgrun.probes.spectra import sigma_max, spectral_radius
from vgrun.probes.layers import safe_norm

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def init_recurrent(key, mcfg, depth: int, h: int, dtype, token=None) -> jax.Array:
    """W_rec [depth, H, H]: normal (std rec_gain / sqrt(H)), orthogonal (times rec_gain) or
    identity (IRNN, Le et al. 2015), then optionally rescaled to a spectral radius
    (`rec_radius`) or a largest singular value (`rec_sigma_max`). token: the QR waits for
    it (vgrun.nn.inits.after)."""
    if mcfg.rec_init == "identity":
        w = jnp.broadcast_to(mcfg.rec_gain * jnp.eye(h, dtype=dtype), (depth, h, h))
    elif mcfg.rec_init == "orthogonal":
        a = after(jax.random.normal(key, (depth, h, h), dtype), token)
        q, r = jnp.linalg.qr(a)
        w = mcfg.rec_gain * q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    else:
        w = mcfg.rec_gain / math.sqrt(h) * jax.random.normal(key, (depth, h, h), dtype)
    if mcfg.rec_radius is not None:
        w = w * (mcfg.rec_radius / spectral_radius(w))[:, None, None]
    elif mcfg.rec_sigma_max is not None:
        w = w * (mcfg.rec_sigma_max / sigma_max(w))[:, None, None]
    return w


SMALL_IN = 16


def project(u: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """u w + b over the last axis. With few inputs (the tasks have 2 to 10) as multiply-adds:
    faster inside the training step on XLA CPU than a matmul with so short a contraction."""
    if w.shape[0] <= SMALL_IN:
        return _project_small(u, w, b)
    return jnp.dot(u, w) + b


@jax.custom_vjp
def _project_small(u, w, b):
    return sum(u[..., k, None] * w[k] for k in range(w.shape[0])) + b


def _project_small_fwd(u, w, b):
    return _project_small(u, w, b), (u, w)


def _project_small_bwd(res, d):
    """dL/dW as one contraction over every leading axis: autodiff of the multiply-adds
    broadcasts each input column to the full [T, B, gH] and reduces it, two passes per input
    (slower; see benchmarks/README.md)."""
    u, w = res
    lead = tuple(range(u.ndim - 1))
    d_w = jax.lax.dot_general(u, d, ((lead, lead), ((), ())))
    return jnp.dot(d, w.T), d_w, d.sum(lead)


_project_small.defvjp(_project_small_fwd, _project_small_bwd)


def lstm_gates(zz: jax.Array, h: int) -> jax.Array:
    """[B, 4H] pre-activations -> gates i, f, g, o: sigmoid, sigmoid, tanh, sigmoid, in one
    tanh over the whole block (sigmoid(x) = tanh(x / 2) / 2 + 1 / 2): one fused pass where
    four slices would run four (faster; see benchmarks/README.md)."""
    half = jnp.full((h,), 0.5, zz.dtype)
    scale = jnp.concatenate([half, half, jnp.ones((h,), zz.dtype), half])
    shift = jnp.concatenate([half, half, jnp.zeros((h,), zz.dtype), half])
    return jnp.tanh(zz * scale) * scale + shift


# ---------------------------------------------------------------------------- the cells
# A cell's step(w, carry, a, p) -> (carry, output, saved): one time step from the carry,
# a = U u_t + b [B, gH] and p added to the state (0 here; the tests' plain reference pass
# adds probes there), and what its backward step multiplies by. The held-out pass runs the
# same steps (saved unused).


def lstm_step(w, state, a, p):
    """An LSTM step; saves the gates' local derivatives k [B, 4H], o (1 - tanh^2 c_t) and f_t:
    worked out here while the gates are in cache, the reverse step is a few kernels and one
    matmul (faster than working them out inside the reverse scan; see benchmarks/README.md)."""
    hh, c_prev = state
    i, f, g, o = jnp.split(lstm_gates(jnp.dot(hh, w) + a, w.shape[0]), 4, axis=-1)
    c = f * c_prev + i * g
    tc = jnp.tanh(c)
    hh = o * tc + p
    k = jnp.concatenate([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tc * o * (1 - o)], -1)
    return (hh, c), hh, (k, o * (1 - tc * tc), f)


def gru_step(w, prev, a, p):
    """A GRU step (Cho et al. 2014; gate blocks z, r, candidate c):

        q = h_{t-1} W,  z = sigmoid(a_z + q_z),  r = sigmoid(a_r + q_r),
        c = tanh(a_c + r q_c),  h_t = (1 - z) h_{t-1} + z c + p_t

    Every gradient of the step is dL/dh_t times what it saves:
    dL/dq = dh [z(1-z)(c - h_{t-1}), k_c q_c r(1-r), k_c r], k_c = z (1 - c^2);
    dL/da the same with k_c in the last block; dL/dh_{t-1} = dh (1 - z) + dL/dq W^T."""
    h = w.shape[0]
    q = jnp.dot(prev, w)
    z = jax.nn.sigmoid(a[:, :h] + q[:, :h])
    r = jax.nn.sigmoid(a[:, h : 2 * h] + q[:, h : 2 * h])
    c = jnp.tanh(a[:, 2 * h :] + r * q[:, 2 * h :])
    hh = (1 - z) * prev + z * c + p
    k_c = z * (1 - c * c)
    k_q = jnp.concatenate([z * (1 - z) * (c - prev), k_c * q[:, 2 * h :] * r * (1 - r), k_c * r], -1)
    return hh, hh, (k_q, k_c, 1 - z)


def elman_step(phi, pascanu: bool, save_slope: bool = True):
    """An Elman step; the carry is the previous output (phi(x_{t-1}) for pascanu):

        standard   z_t = h_{t-1} W + a_t,          h_t = phi(z_t) + p_t,  output h_t
        pascanu    x_t = phi(x_{t-1}) W + a_t + p_t,                      output phi(x_t)

    saves phi' at z_t (x_t), unless told not to (the backward pass takes it from the output)."""

    def step(w, prev, a, p):
        z = jnp.dot(prev, w) + a + (p if pascanu else 0)
        if save_slope:
            out, slope = jax.jvp(phi, (z,), (jnp.ones_like(z),))
        else:
            out, slope = phi(z), None
        out = out + (0 if pascanu else p)
        return out, out, (() if slope is None else (slope,))

    return step


def cell(kind: str, phi, pascanu: bool, save_slope: bool = True):
    """(step, start): the cell's step, and start(zero [B, H]) -> its carry before step 0."""
    if kind == "lstm":
        return lstm_step, lambda zero: (zero, zero)
    if kind == "gru":
        return gru_step, lambda zero: zero
    return elman_step(phi, pascanu, save_slope), lambda zero: phi(zero) if pascanu else zero


# ---------------------------------------------------------------------------- their time scans
# Each scan comes in two forms (`_with_vjp`):
#   plain(w, a) -> outputs                        training steps that are not traced
#   tapped(w, a, a2, p, q) -> (outputs, shadow)   traced steps
# `shadow` is the outputs again (computed once), the start of a second gradient stream that
# measures and never trains: pulled back from v at h_{T-1}, it gives v^T dh_{T-1}/dh_t
# (vgrun.probes.time's jacobian trace) in the same reverse scan as the loss's gradient (one
# pull back, one loop). Its input a2 (= a, from the shadow of the layer below, projected
# with stop-gradient weights) is where it flows on down; W gets nothing from it. The taps
# p, q [T] are zeros whose cotangents are not derivatives but measurements, taken inside
# the reverse scan while each step's gradient is in cache (as vgrun.probes.layers.tap): p gets
# |dL/dh_t|_F, q gets |v^T dh_{T-1}/dh_t|_F (over the batch; dL/dx_t and v^T dphi(x_{T-1})/dx_t
# for pascanu), underflow-safe. No [T, B, H] gradient of either stream is written out.


def _forward(step, start):
    """forward(w, a [T, B, gH]) -> (outputs [T, B, H], residuals)."""

    def forward(w, a):
        first = start(jnp.zeros(a.shape[1:2] + (w.shape[0],), a.dtype))

        def body(carry, x):
            carry, out, saved = step(w, carry, x, 0)
            return carry, (out, saved)

        _, (outs, saved) = jax.lax.scan(body, first, a)
        return outs, (w, first, outs, saved)

    return forward


def _weight_grad(first_out, outs, d_pre) -> jax.Array:
    """dL/dW = sum_t out_{t-1}^T dL/d(pre-activation_t), out_{-1} = first_out: one matmul."""
    prev = jnp.concatenate([first_out[None], outs[:-1]])
    return jnp.dot(prev.reshape(-1, prev.shape[-1]).T, d_pre.reshape(-1, d_pre.shape[-1]))


def _with_vjp(forward, reverse, keep: tuple | None = None):
    """(plain, tapped) scans (see above) from the forward scan and the reverse scan
    reverse(residuals, d_outs: S streams [<= T, B, H], tapped) -> (dL/dW from stream 0,
    dL/da per stream, taps per stream [T] or None). keep = (k, k_shadow): return only the
    last k outputs and k_shadow of the shadow (the top layer: what the readout and the
    jacobian pull read), so their cotangents come in that short, not padded to [T, B, H]."""
    k, k_shadow = keep or (None, None)
    last = lambda x, n: x if n is None else x[-n:]  # noqa: E731

    def plain_fwd(w, a):
        outs, res = forward(w, a)
        return last(outs, k), res

    def plain_bwd(res, d_outs):
        d_w, d_a, _ = reverse(res, (d_outs,), False)
        return d_w, d_a[0]

    plain = jax.custom_vjp(lambda w, a: plain_fwd(w, a)[0])
    plain.defvjp(plain_fwd, plain_bwd)

    def tapped_fwd(w, a, a2, p, q):
        outs, res = forward(w, a)
        return (last(outs, k), last(outs, k_shadow)), res

    def tapped_bwd(res, cts):
        d_w, d_a, taps = reverse(res, cts, True)
        return (d_w, *d_a, *taps)

    tapped = jax.custom_vjp(lambda w, a, a2, p, q: tapped_fwd(w, a, a2, p, q)[0])
    tapped.defvjp(tapped_fwd, tapped_bwd)
    return plain, tapped


def _reverse_scan(step, carry, d_outs: tuple, saved: tuple, tapped: bool):
    """lax.scan of step, reversed, over what the forward saved, for each stream (S of them: each
    its own carry and cotangents d_outs[s]). The streams run stacked on a leading axis: their
    cotangents of the outputs h_t are added to their dL/dh_t (the carry, or its first element),
    then step(carry [S, ...], *saved_t) -> (carry, outputs, the gradient to tap [S, B, H]). A
    time step is one matmul of S*B rows and one pass of each elementwise kernel for all streams
    (the saved arrays broadcast): on XLA's CPU runtime two [B, H] matmuls run one after the
    other, each on one thread (timings in benchmarks/README.md).
    -> (outputs per stream, taps per stream [T] or None). A stream's cotangents shorter than T
    are those of the last steps (zero before)."""
    n_steps, n_streams = saved[0].shape[0], len(d_outs)
    one = n_streams == 1  # the untraced steps: no stream axis (an axis of 1 costs time; see benchmarks/README.md)
    # the streams' cotangents stacked once [L, S, B, H], the shorter ones zero-padded in front: added
    # to the stacked carry in one kernel a step (stacked inside the loop, they cost a copy a step)
    n = max(d.shape[0] for d in d_outs)
    d_out = d_outs[0] if one else jnp.stack(
        [jnp.pad(d, ((n - d.shape[0], 0),) + ((0, 0),) * (d.ndim - 1)) for d in d_outs], 1)
    start = carry if one else jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (n_streams,) + c.shape), carry)

    def body(c, x):
        t, d_t, saved_t = x
        if d_t is None:  # the last n steps: index into the short array, zero before
            i = t - (n_steps - n)
            d_t = jnp.where(i >= 0, jax.lax.dynamic_index_in_dim(d_out, jnp.maximum(i, 0), keepdims=False), 0)
        # dL/dh_t (the carry, or its first element): through time and through the output
        c = (c[0] + d_t, *c[1:]) if isinstance(c, tuple) else c + d_t
        c, out, src = step(c, *saved_t)
        outs = (out,) if one else tuple(jax.tree_util.tree_map(lambda o: o[s], out) for s in range(n_streams))
        # one pass where that is exact (vgrun.probes.layers.safe_norm), not always two; one check for all streams
        taps = safe_norm(src, tuple(range(int(not one), src.ndim))) if tapped else ()
        return c, (outs, taps)

    xs = (jnp.arange(n_steps), d_out if n == n_steps else None, saved)
    _, (outs, taps) = jax.lax.scan(body, start, xs, reverse=True)
    if not tapped:
        return outs, None
    return outs, ((taps,) if one else tuple(taps[:, s] for s in range(n_streams)))


def lstm_reverse(res, d_outs, tapped: bool):
    """The LSTM's reverse scan (see `lstm_step` for what it multiplies by)."""
    w, (zero, _), hs, (ks, as_, fs) = res
    wt = w.T

    def step(carry, k, a, f):
        dh, dc = carry  # dL/dh_t (through time and the layer's output), dL/dc_t through f_{t+1}
        dc = dc + dh * a
        dz = jnp.concatenate([dc, dc, dc, dh], -1) * k  # dL/d(pre-activations of i, f, g, o)
        return (jnp.dot(dz, wt), dc * f), dz, dh

    d_z, taps = _reverse_scan(step, (zero, zero), d_outs, (ks, as_, fs), tapped)
    return _weight_grad(zero, hs, d_z[0]), d_z, taps


def gru_reverse(res, d_outs, tapped: bool):
    """The GRU's reverse scan (see `gru_step`)."""
    w, zero, hs, (kq, kc, keep) = res
    h, wt = w.shape[0], w.T

    def step(dh, k_q, k_c, k_h):  # dh: dL/dh_t, through time and through the layer's output
        dq = jnp.concatenate([dh, dh, dh], -1) * k_q
        return dh * k_h + jnp.dot(dq, wt), (dq, dh * k_c), dh

    out, taps = _reverse_scan(step, zero, d_outs, (kq, kc, keep), tapped)
    d_a = tuple(jnp.concatenate([d_q[..., : 2 * h], d_ac], -1) for d_q, d_ac in out)
    return _weight_grad(zero, hs, out[0][0]), d_a, taps


def elman_reverse(pascanu: bool, slope_of_output=None):
    """The Elman RNN's reverse scan: one multiply and one matmul per step. With
    slope_of_output (tanh, sigmoid, relu, ...: vgrun.nn.activations) phi' comes from the saved
    outputs, which dL/dW reads anyway, instead of a second saved array (cheaper; see
    benchmarks/README.md)."""

    def reverse(res, d_outs, tapped: bool):
        w, first, outs, saved = res
        wt = w.T

        def step(g, x):  # g: dL/dh_t (standard), dL/dphi(x_t) (pascanu), through time and the output
            slope = x if slope_of_output is None else slope_of_output(x)
            dz = g * slope  # dL/dz_t (standard), dL/dx_t (pascanu)
            return jnp.dot(dz, wt), dz, (dz if pascanu else g)

        xs = saved if slope_of_output is None else (outs,)
        d_z, taps = _reverse_scan(step, jnp.zeros_like(first), d_outs, xs, tapped)
        return _weight_grad(first, outs, d_z[0]), d_z, taps

    return reverse


def scans(kind: str, act, pascanu: bool, keep: tuple | None = None):
    """(plain, tapped) time scans of a cell (act: its vgrun.nn.activations.Activation, for rnn),
    each with its backward pass written out; keep: see `_with_vjp`.

    Autodiff of a scan saves a dozen residual arrays per time step and reads them all back
    (and sums dL/dW step by step inside the loop); here the forward step saves what the
    cell's step says, the reverse scan is a few small kernels and one matmul per step, and
    dL/dW one matmul after it. Checked against numerical derivatives in tests.
    """
    from_output = act.slope_of_output if kind == "rnn" else None
    reverse = {"lstm": lstm_reverse, "gru": gru_reverse}.get(kind) or elman_reverse(pascanu, from_output)
    return _with_vjp(_forward(*cell(kind, act.fn, pascanu, save_slope=from_output is None)), reverse, keep)


def make(cfg, n_in: int, n_out: int, dtype, n_out_steps: int, seq_len: int) -> Model:
    """The rnn, lstm or gru of cfg: x [B, seq_len, n_in] -> y (see `vgrun.nn.model.Model`)."""
    kind, depth, h, mcfg = cfg.model.name, cfg.depth, cfg.width, cfg.model
    g = GATES[kind]
    act = ACTIVATIONS[cfg.act]
    phi = act.fn

    def init(key):
        k = jax.random.split(key, 6)
        blocks = [init_recurrent(k[0], mcfg, depth, h, dtype)]
        if g > 1:  # gated cells: every gate's recurrent block gets the recurrent init, one QR after another
            for kk in jax.random.split(k[1], g - 1):
                blocks.append(init_recurrent(kk, mcfg, depth, h, dtype, token=blocks[-1]))
        w_rec = jnp.concatenate(blocks, -1)
        b, w_inp, w_hid, w_out = init_many(
            [(k[2], (depth, g * h), "bias"), (k[3], (n_in, g * h), "weight"),
             (k[4], (max(depth - 1, 1), h, g * h), "weight"), (k[5], (h, n_out), "weight")],
            cfg.init, dtype, token=w_rec if mcfg.rec_init == "orthogonal" else None)
        if kind == "lstm":  # gate order i, f, g, o
            b = b.at[:, h : 2 * h].add(mcfg.forget_bias)
        params = {
            "inp": {"w": w_inp},
            "hid": {"w": w_hid[: depth - 1]},
            "rec": {"w": w_rec, "b": b},
            "out": {"w": w_out, "b": jnp.zeros((n_out,), dtype)},
        }
        return params, {}

    pascanu = mcfg.form == "pascanu"
    step, start = cell(kind, phi, pascanu)  # the held-out pass's steps
    # training's scans, with written-out backward passes: of the top layer, only what the
    # readout and the jacobian pull read comes out
    below, top = scans(kind, act, pascanu), scans(kind, act, pascanu, keep=(n_out_steps, 1))

    def held_out(w, w_in, b, seq, keep):
        """A layer's last `keep` outputs [keep, B, H] from its inputs seq [T, B, n_in], each
        step's input projected inside the scan (no stacked inputs or states beyond those)."""

        def run(carry, u):
            return step(w, carry, project(u, w_in, b), 0)[:2]

        n = seq.shape[0]
        carry, _ = jax.lax.scan(lambda c, u: (run(c, u)[0], None), start(jnp.zeros((seq.shape[1], h), dtype)),
                                seq[: n - keep])
        return jax.lax.scan(run, carry, seq[n - keep :])[1]

    def hidden(params, x, probes, keep=None):
        """(the top layer's last n_out_steps outputs [n_out_steps, B, H], the last of its shadow
        (with probes; else the outputs again)). keep: the held-out pass, each layer's
        inputs projected inside its scan (no stacked inputs or states beyond those, which at
        a held-out batch of 1024 x 200 steps would be 100 MB each)."""
        seq = jnp.swapaxes(x, 0, 1)  # [T, B, n_in]
        n = seq.shape[0]
        for l in range(depth):
            w_in = params["inp"]["w"] if l == 0 else params["hid"]["w"][l - 1]
            b, w = params["rec"]["b"][l], params["rec"]["w"][l]
            if keep is not None:
                seq = shadow = held_out(w, w_in, b, seq, keep if l == depth - 1 else n)
                continue
            a = project(seq, w_in, b)  # [T, B, gH]: all steps at once
            plain, tapped = top if l == depth - 1 else below
            if probes is None:
                seq = shadow = plain(w, a)
            else:  # the shadow stream (see the time scans): the same numbers, nothing trained through it
                sg = jax.lax.stop_gradient
                a2 = sg(a) if l == 0 else project(shadow, sg(w_in), sg(b))  # the input itself needs no gradient
                seq, shadow = tapped(w, a, a2, probes["loss"][l], probes["jacobian"][l])
        return seq, shadow

    def apply(params, state, x, probes=None, train=True, stats=False):
        """-> (y, state, {"h_last": the top layer's last state h_{T-1} [B, H]} if stats else {}; with
        probes, from the shadow stream: pull v back from it for the jacobian taps)."""
        top, shadow = hidden(params, x, probes, None if train else n_out_steps)  # [n_out_steps, B, H]
        y = jnp.dot(top, params["out"]["w"]) + params["out"]["b"]
        y = jnp.swapaxes(y, 0, 1)  # [B, n_out_steps, n_out]
        return (y[:, 0] if n_out_steps == 1 else y), state, ({"h_last": shadow[-1]} if stats else {})

    def probes():
        """Zero taps [depth, T] (see the time scans): the pull back of (loss, v at the shadow's
        h_{T-1}) turns them into |dL/dh_t| and |v^T dh_{T-1}/dh_t| per layer and time step."""
        zeros = jnp.zeros((depth, seq_len), dtype)
        return {"loss": zeros, "jacobian": zeros}

    return Model(init, apply, probes, depth, recurrent=True)
