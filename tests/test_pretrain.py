"""Greedy layer-wise pretraining: CD-k against a hand computation, the autoencoder step,
the [0, 1] input map, and a run whose tables mark both phases."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vgrun.training import pretrain
from vgrun.io import store
from vgrun.io.frames import run_frames
import programs
from vgrun.training import loop as train
from vgrun.nn.activations import ACTIVATIONS
from vgrun.config.schema import ConfigError, validate
from vgrun.cli.main import register_schema

CONF = str(Path(__file__).parents[1] / "vgrun" / "conf")
register_schema()


def compose_config(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        dcfg = compose("config", overrides=list(overrides))
    return validate(OmegaConf.to_object(dcfg))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _tiny_rbm(seed=0, n_v=5, n_h=3):
    rng = np.random.default_rng(seed)
    layer = {"w": rng.normal(0, 1.0, (n_v, n_h)), "b": rng.normal(0, 0.5, n_h), "c": rng.normal(0, 0.5, n_v)}
    v0 = rng.uniform(0, 1, (4, n_v))
    return {k: v.astype(np.float32) for k, v in layer.items()}, v0.astype(np.float32)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_cd_k_matches_hand_computation(k):
    layer, v0 = _tiny_rbm()
    key = jax.random.PRNGKey(7)
    grads, err = pretrain.cd_k({n: jnp.asarray(v) for n, v in layer.items()}, jnp.asarray(v0), key, k)
    # by hand, with the same uniform draws: hidden sample i uses split(key, k)[i]
    w, b, c = (layer[n].astype(np.float64) for n in ("w", "b", "c"))
    us = [np.asarray(jax.random.uniform(kk, (4, 3))) for kk in jax.random.split(key, k)]
    ph0 = _sigmoid(v0 @ w + b)  # positive phase: P(h=1 | v0)
    ph, v = ph0, v0
    recon = None
    for i in range(k):
        h = (us[i] < ph).astype(np.float64)  # h_i ~ P(h | v_i)
        v = _sigmoid(h @ w.T + c)  # v_{i+1} = P(v=1 | h_i), probabilities
        ph = _sigmoid(v @ w + b)
        recon = np.mean((v0 - v) ** 2) if recon is None else recon
    pos = np.einsum("bi,bj->ij", v0, ph0) / 4  # <v h>_data
    neg = np.einsum("bi,bj->ij", v, ph) / 4  # <v h>_model after k steps
    np.testing.assert_allclose(grads["w"], pos - neg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["b"], (ph0 - ph).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["c"], (v0 - v).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(err, recon, rtol=1e-5)
    assert np.abs(pos - neg).max() > 1e-3  # the test is not comparing two zeros


def test_cd_k_with_saturated_units_is_deterministic():
    """Hidden probabilities of exactly 0 or 1: the chain has one path, computed in closed form."""
    w = jnp.array([[20.0, -20.0], [20.0, -20.0]])  # both visible on: h = (1, 0)
    layer = {"w": w, "b": jnp.zeros(2), "c": jnp.zeros(2)}
    v0 = jnp.array([[1.0, 1.0]])
    grads, _ = pretrain.cd_k(layer, v0, jax.random.PRNGKey(0), 1)
    v1 = _sigmoid(np.array([20.0, 20.0]))  # P(v=1 | h=(1, 0)) = sigmoid(20)
    ph1 = _sigmoid(v1 @ np.array([[20.0, -20.0], [20.0, -20.0]]))
    np.testing.assert_allclose(grads["w"], np.outer([1, 1], [1, 0]) - np.outer(v1, ph1), atol=1e-6)


def test_autoencoder_step_reduces_reconstruction_error():
    rng = np.random.default_rng(0)
    v = jnp.asarray(rng.uniform(0, 1, (32, 8)), jnp.float32)
    layer = {"w": jnp.asarray(rng.normal(0, 0.3, (8, 4)), jnp.float32), "b": jnp.zeros(4), "c": jnp.zeros(8)}
    act = ACTIVATIONS["sigmoid"].fn
    before, g = jax.value_and_grad(pretrain.ae_loss)(layer, v, act)
    after = pretrain.ae_loss(jax.tree_util.tree_map(lambda p, d: p - 0.1 * d, layer, g), v, act)
    assert after < before
    # and the jitted per-layer scan keeps reducing it: last window well below the first
    _, errs = pretrain.train_layer(layer, v, jax.random.PRNGKey(0), 0.5, kind="autoencoder", act_name="sigmoid",
                                   steps=400, batch=16, k=1, log_every=50)
    assert errs.shape == (8,) and errs[-1] < 0.7 * errs[0]  # measured: 0.086 -> 0.044


def test_rbm_training_reduces_reconstruction_error():
    rng = np.random.default_rng(1)
    protos = rng.uniform(0, 1, (3, 12)) > 0.5  # three binary prototypes, noisy copies
    v = (protos[rng.integers(0, 3, 256)] ^ (rng.uniform(0, 1, (256, 12)) < 0.05)).astype(np.float32)
    layer = {"w": jnp.asarray(rng.normal(0, 0.01, (12, 6)), jnp.float32), "b": jnp.zeros(6), "c": jnp.zeros(12)}
    _, errs = pretrain.train_layer(layer, jnp.asarray(v), jax.random.PRNGKey(0), 0.5, kind="rbm", act_name="sigmoid",
                                   steps=1000, batch=32, k=1, log_every=100)
    assert errs[-1] < 0.5 * errs[0]


def test_fold_visible_map_reads_raw_inputs():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 3, (50, 4)).astype(np.float32)
    lo, span = pretrain.visible_map(x)
    v = (x - lo) / span
    assert v.min() == 0 and v.max() == 1
    w, b = rng.normal(0, 1, (4, 3)).astype(np.float32), rng.normal(0, 1, 3).astype(np.float32)
    w2, b2 = pretrain.fold_visible_map(w, b, lo, span)
    np.testing.assert_allclose(x @ w2 + b2, v @ w + b, rtol=1e-4, atol=1e-4)
    lo01, span01 = pretrain.visible_map(np.clip(x, 0, 1))  # inputs in [0, 1] are used as they are
    assert (lo01 == 0).all() and (span01 == 1).all()
    # the autoencoder's input, standardized per unit; a constant unit is only centred
    h = np.concatenate([x, np.full((50, 1), 0.5, np.float32)], 1)
    mu, sd = pretrain.input_map("autoencoder", 3, h)
    z = (h - mu) / sd
    np.testing.assert_allclose(z[:, :4].std(0), 1, rtol=1e-5)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    assert sd[4] == 1


@pytest.mark.long  # a whole run with pretraining (8 s); the fast suite keeps each phase's own step tests
@pytest.mark.parametrize("kind", ["autoencoder", "rbm"])
def test_run_with_pretraining_records_both_phases(kind, tmp_path):
    cfg = compose_config([f"pretrain={kind}", "act=sigmoid", "depth=3", "width=16", "steps=8", "trace_every=4",
                          "chunks=1", "pretrain.steps=40", "pretrain.log_every=20"])
    r = programs.run(cfg)
    log = r.pretrain
    assert log.recon.shape == (3, 2) and np.isfinite(log.recon).all()
    assert log.traces.delta.shape == (3, 4) and np.isfinite(log.traces.delta).all()
    # pretraining changed the hidden layers fine-tuning starts from (|W_l| at its step 0 against
    # the random initialisation, pretraining's point 0), not the output layer
    assert not np.allclose(r.traces.weight[0, :3], log.traces.weight[0, :3], rtol=1e-3)
    np.testing.assert_allclose(r.traces.weight[0, 3], log.traces.weight[0, 3], rtol=1e-6)
    store.write_frames(tmp_path, run_frames(cfg, r.metrics, r.traces, pretrain=log))
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    traces = pd.read_parquet(tmp_path / "traces.parquet")
    assert set(steps.phase) == {"pretrain", "finetune"} and set(traces.phase) == {"pretrain", "finetune"}
    pre = steps[steps.phase == "pretrain"]
    assert (pre.step < 0).all() and len(pre) == 6 and pre.recon_error.notna().all()
    assert (traces[traces.phase == "finetune"].step >= 0).all()
    assert sorted(traces[traces.phase == "pretrain"].step.unique()) == [-120, -80, -40]


@pytest.mark.parametrize("args, key", [(["pretrain=rbm", "act=tanh"], "act (pretrain=rbm)"),
                                       (["pretrain=autoencoder", "norm=batchnorm"], "norm (pretrain=autoencoder)"),
                                       (["pretrain=autoencoder", "model=resmlp"], "model (pretrain=autoencoder)"),
                                       (["pretrain=rbm", "act=sigmoid", "pretrain.log_every=7"], "pretrain.log_every")])
def test_bad_pretrain_config_is_one_clear_error(args, key):
    with pytest.raises(ConfigError) as e:
        compose_config(args)
    assert e.value.key == key
