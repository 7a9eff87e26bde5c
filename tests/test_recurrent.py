"""Recurrent networks: BPTT traces against finite differences, W_rec initialization, clipping."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrun.probes import time as temporal
from vgrun.science import verdict
from vgrun.probes.spectra import spectral
import programs
from vgrun.training import loop as train
from vgrun.training import program
from vgrun.nn.activations import ACTIVATIONS
from vgrun.config.schema import Config, DataConfig, ModelConfig, OptimizerConfig
from vgrun.nn import rnn



@pytest.fixture(autouse=True)
def _float64():
    """float64 in this module's tests only (tests/conftest.py restores the flag after each test)."""
    jax.config.update("jax_enable_x64", True)
EPS = 1e-6


def net_of(cfg, prog):
    """The float64 recurrent network of cfg, sized for its program's problem."""
    p = prog.problem
    return rnn.make(cfg, p.n_in, p.n_out, jnp.float64, p.n_out_steps, p.seq_steps)


def tiny(kind="rnn", form="standard", act="tanh", depth=1, **model):
    return Config(depth=depth, width=4, act=act, seq_len=6, batch_size=3, steps=1, chunks=1, dtype="float64",
                  model=ModelConfig(name=kind, form=form, rec_gain=1.3, **model), data=DataConfig(name="adding"))


def reference_states(cfg, params, x, probes):
    """The network's forward pass written plainly, for reference: rnn.cell's steps under a
    lax.scan that JAX differentiates itself, with additive probes [D, T, B, H] on every
    state (h_t; x_t for pascanu). -> the top layer's outputs [T, B, H]."""
    step, start = rnn.cell(cfg.model.name, ACTIVATIONS[cfg.act].fn, cfg.model.form == "pascanu")
    seq = jnp.swapaxes(x, 0, 1)
    for l in range(cfg.depth):
        w_in = params["inp"]["w"] if l == 0 else params["hid"]["w"][l - 1]
        w, a = params["rec"]["w"][l], seq @ w_in + params["rec"]["b"][l]

        def body(c, xs, w=w):
            c, out, _ = step(w, c, *xs)
            return c, out

        _, seq = jax.lax.scan(body, start(jnp.zeros((x.shape[0], cfg.width), x.dtype)), (a, probes[l]))
    return seq


def reference_readout(params, top):
    return top[-1] @ params["out"]["w"] + params["out"]["b"]


@pytest.mark.parametrize("kind,form,depth", [("rnn", "standard", 1),
                                             pytest.param("rnn", "pascanu", 2, marks=pytest.mark.long),
                                             pytest.param("lstm", "standard", 1, marks=pytest.mark.long),
                                             ("gru", "standard", 1)])
def test_bptt_delta_per_time_step_matches_finite_differences(kind, form, depth):
    """The traced delta (measured inside the written-out reverse scan) against central
    differences of each example's loss with respect to every state, on the plain forward pass."""
    cfg = tiny(kind, form, depth=depth)
    prog = program.make_train(cfg)
    a = prog.problem.arrays
    carry = prog.init(jax.random.PRNGKey(0))
    x, y = prog.problem.sample(jax.random.fold_in(carry.key, 0), a, cfg.batch_size)
    _, (_, (trace, _)) = prog.chunk(jax.tree_util.tree_map(jnp.copy, carry), a)  # (trace, W_rec)
    net = net_of(cfg, prog)
    zero = jnp.zeros((cfg.depth, cfg.seq_len, cfg.batch_size, cfg.width))
    ref = lambda p: reference_readout(carry.params, reference_states(cfg, carry.params, x, p))  # noqa: E731
    np.testing.assert_allclose(ref(zero), net.apply(carry.params, {}, x)[0], rtol=1e-12)  # the same network
    per_example = lambda p: ((ref(p) - y) ** 2).sum(-1)  # noqa: E731  (L_i [B])
    d, t_len, b, h = zero.shape

    @jax.jit  # every central difference in one program: d L_i / d state (l, t, i, j)
    def central(index):
        def one(k):
            l, t, i, j = jnp.unravel_index(k, zero.shape)
            e = zero.at[l, t, i, j].set(EPS)
            return (per_example(e)[i] - per_example(-e)[i]) / (2 * EPS)
        return jax.vmap(one)(index)

    g = np.asarray(central(jnp.arange(zero.size))).reshape(zero.shape)
    sq = (g**2).sum((2, 3))
    np.testing.assert_allclose(np.asarray(trace.delta[0]), np.sqrt(sq / b), rtol=1e-6)


@pytest.mark.parametrize("kind,form,act", [("lstm", "standard", "tanh"), ("gru", "standard", "tanh"),
                                           ("rnn", "standard", "tanh"), ("rnn", "pascanu", "sigmoid")])
def test_one_pull_gives_the_loss_gradient_and_both_taps(kind, form, act):
    """A traced step's one pull back of (loss, v at the shadow's h_{T-1}), two layers deep:
    the parameters get the loss's gradient only, and the taps are |dL/dh_t| and
    |v^T dh_{T-1}/dh_t| of every layer and step, as JAX's own differentiation of the plain
    forward pass gives them."""
    cfg = tiny(kind, form, act, depth=2)
    prog = program.make_train(cfg)
    net = net_of(cfg, prog)
    params, _ = net.init(jax.random.PRNGKey(3))
    x, y = prog.problem.sample(jax.random.PRNGKey(4), prog.problem.arrays, cfg.batch_size)
    v = temporal.unit_vectors(jax.random.PRNGKey(5), jnp.zeros((cfg.batch_size, cfg.width)))

    def forward(params, taps):
        y_pred, _, measured = net.apply(params, {}, x, taps, stats=True)
        h_last = measured["h_last"]
        return jnp.sum(jnp.sin(3 * y_pred - y)), h_last

    @jax.jit  # each side one program: faster than op by op
    def ours(params):
        (_, h_last), pull = jax.vjp(forward, params, net.probes())
        return (h_last, *pull((1.0, v)))

    zero = jnp.zeros((cfg.depth, cfg.seq_len, cfg.batch_size, cfg.width))
    ref_loss = lambda p, probes: jnp.sum(jnp.sin(3 * reference_readout(p, reference_states(cfg, p, x, probes)) - y))  # noqa: E731

    @jax.jit
    def reference(params):
        top, pull_ref = jax.vjp(lambda probes: reference_states(cfg, params, x, probes)[-1], zero)
        return (top, *jax.grad(ref_loss, (0, 1))(params, zero), *pull_ref(v))

    h_last, grads, taps = ours(params)
    top, ref_grads, d_states, j_states = reference(params)
    np.testing.assert_allclose(h_last, top, rtol=1e-12)
    for got, want in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(taps["loss"], np.linalg.norm(d_states, axis=(2, 3)), rtol=1e-9)
    np.testing.assert_allclose(taps["jacobian"], np.linalg.norm(j_states, axis=(2, 3)), rtol=1e-9)
    assert np.all(np.asarray(taps["jacobian"])[:, -1] > 0) and np.all(np.asarray(taps["loss"]) > 0)


def test_jacobian_trace_of_a_linear_rnn_is_v_times_a_matrix_power():
    cfg = tiny(act="linear", rec_init="orthogonal")
    cfg.model.rec_gain = 0.9  # W = 0.9 Q: |v^T W^k| = 0.9^k exactly for a unit v
    prog = program.make_train(cfg)
    _, (_, (trace, _)) = prog.chunk(prog.init(jax.random.PRNGKey(1)), prog.problem.arrays)
    k = np.arange(cfg.seq_len)[::-1]  # horizon of time step t
    np.testing.assert_allclose(np.asarray(trace.jacobian[0, 0]), 0.9**k, rtol=1e-10)


@pytest.mark.optimized
def test_time_step_taps_do_not_underflow_in_float32():
    """The taps inside the reverse scan are underflow-safe: in float32 a plain sum of squares
    is 0 once the entries fall near 1e-22; here they fall to ~1e-31 (0.5^100 / sqrt(H)), and
    every horizon still reads 0.5^k, through the one-pass norm and through its fallback."""
    cfg = dataclasses.replace(tiny(act="linear", rec_init="orthogonal"), dtype="float32", seq_len=101, width=16)
    cfg.model.rec_gain = 0.5
    prog = program.make_train(cfg)
    _, (_, (trace, _)) = prog.chunk(prog.init(jax.random.PRNGKey(1)), prog.problem.arrays)
    k = np.arange(cfg.seq_len)[::-1]
    np.testing.assert_allclose(np.asarray(trace.jacobian[0, 0]), 0.5**k, rtol=1e-4)


@pytest.mark.parametrize("target", ["rec_radius", "rec_sigma_max"])
def test_recurrent_init_hits_its_spectral_target(target):
    mcfg = ModelConfig(name="rnn", **{target: 0.7})
    w = np.asarray(rnn.init_recurrent(jax.random.PRNGKey(2), mcfg, 2, 64, jnp.float64))
    for layer in w:
        measured = np.abs(np.linalg.eigvals(layer)).max() if target == "rec_radius" else np.linalg.norm(layer, 2)
        assert measured == pytest.approx(0.7, rel=1e-9)


def test_identity_and_orthogonal_inits():
    w = rnn.init_recurrent(jax.random.PRNGKey(3), ModelConfig(rec_init="identity"), 1, 8, jnp.float64)
    np.testing.assert_array_equal(w[0], np.eye(8))
    q = np.asarray(rnn.init_recurrent(jax.random.PRNGKey(3), ModelConfig(rec_init="orthogonal"), 1, 8, jnp.float64))[0]
    np.testing.assert_allclose(q.T @ q, np.eye(8), atol=1e-12)


@pytest.mark.long  # also claimed by +experiment=pascanu2013
def test_vanishing_below_one_over_gamma_and_exploding_above():
    """tanh (gamma = 1): sigma_max(W_rec) < 1 bounds |dh_T/dh_t| by sigma_max^k: exponential decay."""
    def delta(**model):
        cfg = Config(depth=1, width=64, act="tanh", seq_len=60, batch_size=32, steps=1, chunks=1, dtype="float64",
                     model=ModelConfig(name="rnn", **model), data=DataConfig(name="adding"))
        prog = program.make_train(cfg)
        _, (_, (trace, _)) = prog.chunk(prog.init(jax.random.PRNGKey(4)), prog.problem.arrays)
        return np.asarray(trace.delta[0, 0]), np.asarray(trace.jacobian[0, 0])

    d, j = delta(rec_sigma_max=0.8)
    k = np.arange(60)[::-1]
    assert (j <= 0.8**k * (1 + 1e-9)).all()  # the bound |v^T J| <= (gamma sigma_max)^k holds at every horizon
    assert verdict.decay_per_step(d[:-1]) < 0.8
    d, _ = delta(rec_radius=3.0)
    assert d[0] > 1e6 * d[-1]  # exploding: the earliest step gets the largest gradient


def test_clipping_bounds_every_update_and_reports_how_often_it_fired():
    cfg = Config(depth=1, width=16, act="tanh", seq_len=20, batch_size=16, steps=20, chunks=1,
                 model=ModelConfig(name="rnn", rec_radius=2.5), data=DataConfig(name="adding"),
                 optimizer=OptimizerConfig(lr=1.0, clip_norm=0.01))
    r = programs.run(cfg)
    upd = np.sqrt(r.traces.update_ratio**2 * r.traces.weight_rec**2).sum(1)  # recurrent block of the update
    assert (upd <= 0.01 * (1 + 1e-5)).all()
    assert np.isfinite(r.metrics["grad_norm"]).all()  # kept at every step when clipping
    from vgrun.science.verdict import clipping

    c = clipping(cfg, r.metrics)
    assert c["fired_share"] == np.mean(r.metrics["grad_norm"] > 0.01) and c["fired_share"] > 0.5


def test_spectral_of_a_diverged_matrix_is_nan_not_a_crash():
    w = jnp.stack([jnp.eye(3) * 2.0, jnp.full((3, 3), jnp.nan)])  # [2, H, H]: one finite, one diverged
    rho, smax = jax.jit(spectral)(w)
    assert np.allclose(rho[0], 2.0) and np.allclose(smax[0], 2.0)
    assert np.isnan(rho[1]) and np.isnan(smax[1])


@pytest.mark.parametrize("kind,form,depth,data", [("rnn", "standard", 1, "adding"), ("rnn", "pascanu", 2, "adding"),
                                                  ("lstm", "standard", 2, "copy"), ("gru", "standard", 1, "copy")])
def test_held_out_pass_equals_the_training_forward_pass(kind, form, depth, data):
    """The held-out pass keeps only the readout steps (no stacked states): same outputs."""
    cfg = tiny(kind, form, depth=depth)
    cfg.data = DataConfig(name=data)
    prog = program.make_train(cfg)
    net = net_of(cfg, prog)
    params, _ = net.init(jax.random.PRNGKey(5))
    x = prog.problem.arrays["x_test"][:7]
    held_out = net.apply(params, {}, x, train=False)[0]
    np.testing.assert_allclose(held_out, net.apply(params, {}, x, train=True)[0], rtol=1e-12)
    assert held_out.shape[1:] == ((prog.problem.n_out_steps,) if prog.problem.n_out_steps > 1 else ()) + (prog.problem.n_out,)


def test_traced_spectra_of_w_rec_come_back_from_the_host_for_every_member():
    """rho and sigma_max of W_rec at each traced step (computed on the host, beside the next chunk)."""
    cfg = tiny(rec_radius=0.7)
    cfg.steps, cfg.chunks = 6, 3
    hps = [train.hyper.values(cfg)] * 2
    runs = programs.run_members(cfg, hps, keys=[jax.random.PRNGKey(0), jax.random.PRNGKey(1)])
    for r in runs:
        assert r.traces.rho.shape == (6, 1)
        np.testing.assert_allclose(r.traces.rho[0], 0.7, rtol=1e-9)  # step 0 traces the initial W_rec
        w_end = np.asarray(r.carry.params["rec"]["w"][0])  # after the last step
        assert np.all(np.isfinite(r.traces.sigma_max)) and np.all(r.traces.sigma_max >= r.traces.rho * (1 - 1e-12))
        assert abs(np.abs(np.linalg.eigvals(w_end)).max() - r.traces.rho[-1, 0]) < 0.05  # one step apart
    assert runs[0].traces.rho[-1, 0] != runs[1].traces.rho[-1, 0]  # each member its own W_rec


@pytest.mark.parametrize("kind,form,act", [("lstm", "standard", "tanh"), ("gru", "standard", "tanh"),
                                           ("rnn", "standard", "tanh"), ("rnn", "pascanu", "sigmoid"),
                                           ("rnn", "standard", "gcu")])
@pytest.mark.parametrize("probed", [False, True])
def test_written_out_backward_passes_match_numerical_derivatives(kind, form, act, probed):
    """The written-out backward passes through time (rnn.scans: lstm, gru, elman): every
    parameter's gradient against central differences (jax.test_util.check_grads, float64),
    two layers deep; probed: the traced steps' scans, taps and shadow stream in place."""
    from jax.test_util import check_grads

    cfg = tiny(kind, form, act, depth=2)
    prog = program.make_train(cfg)
    net = net_of(cfg, prog)
    params, _ = net.init(jax.random.PRNGKey(6))
    x, y = prog.problem.sample(jax.random.PRNGKey(7), prog.problem.arrays, cfg.batch_size)
    taps = net.probes() if probed else None  # the traced steps' scans

    @jax.jit  # one program, not op by op
    def loss(params):
        return jnp.sum(jnp.sin(3 * net.apply(params, {}, x, taps)[0] - y))

    check_grads(loss, (params,), order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-7)


@pytest.mark.long  # run by .ci/run after the fast suite
def test_gated_orthogonal_init_does_not_hang_on_two_xla_threads():
    """An LSTM's four orthogonal gate blocks each take a QR. On jaxlib 0.10's CPU backend a
    batched QR blocks its XLA thread until its batch is done on the same pool, so as many
    QRs at once as threads hung them all: this very program, in a fresh process with
    XLA's two threads, hung every time; vgrun.nn.inits.after runs the QRs in turn."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import jax, numpy as np\n"
        "from hydra import compose, initialize_config_module\n"
        "from omegaconf import OmegaConf\n"
        "from vgrun.config.schema import validate\n"
        "from vgrun.cli.main import register_schema\n"
        "from vgrun.training import program\n"
        "register_schema()\n"
        "for ov in (['model=lstm', 'depth=2'], ['model=gru', 'depth=2', 'init=orthogonal']):\n"
        "    with initialize_config_module('vgrun.conf', version_base=None):\n"
        "        d = compose('config', overrides=ov + ['data=adding', 'seq_len=20'])\n"
        "    prog = program.make_train(validate(OmegaConf.to_object(d)))\n"
        "    for seed in range(3):\n"
        "        params = prog.init(jax.random.PRNGKey(seed)).params\n"
        "        assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree_util.tree_leaves(params))\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
