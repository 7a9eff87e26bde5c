import jax
import numpy as np
import pytest

from vgrun.data import datasets
import programs
from vgrun.training import loop as train
from vgrun.training.cache import ProgramCache
from vgrun.training import program
from vgrun.config.schema import Config, DataConfig, InitConfig, ModelConfig, OptimizerConfig
from vgrun.config.names import DATASETS, NORMS, OPTIMIZERS, SCHEDULES


def small(**kw) -> Config:
    base = dict(depth=3, width=16, batch_size=16, steps=20, chunks=2)
    base.update(kw)
    return Config(**base)


def run(cfg):
    return programs.run(cfg)


def test_same_config_and_seed_give_identical_traces():
    a, b = run(small()), run(small())
    for f in a.traces._fields:
        np.testing.assert_array_equal(getattr(a.traces, f), getattr(b.traces, f))
    np.testing.assert_array_equal(a.metrics["loss"], b.metrics["loss"])
    c = run(small(seed=1))
    assert not np.array_equal(a.metrics["loss"], c.metrics["loss"])


def test_shapes_with_trace_every():
    r = run(small(steps=20, trace_every=5, depth=4))
    assert r.traces.delta.shape == (4, 5)  # 20 / 5 traced steps x (4 hidden + output)
    assert r.metrics["loss"].shape == (20,)
    assert np.isfinite(r.metrics["grad_norm"][::5]).all() and np.isnan(r.metrics["grad_norm"][1::5]).all()
    assert np.isfinite(r.metrics["test_acc"]).sum() == 2  # once per chunk
    assert r.status == "completed"


def test_training_learns_digits():
    r = run(Config(depth=3, width=64, act="relu", init=InitConfig(name="he"), steps=300, chunks=3))
    assert r.metrics["loss"][-20:].mean() < 0.5 * r.metrics["loss"][:5].mean()
    assert r.test[1] > 0.8


def test_a_diverging_run_stops_and_keeps_what_it_measured():
    cfg = small(act="linear", depth=6, steps=200, chunks=10, optimizer=OptimizerConfig(lr=50.0))
    r = run(cfg)
    assert r.status == "diverged"
    assert len(r.metrics["loss"]) < 200 and len(r.metrics["loss"]) % 20 == 0
    assert not np.isfinite(r.metrics["loss"]).all()
    assert np.isfinite(r.metrics["loss"][0])


def test_should_stop_interrupts_between_chunks():
    r = programs.run(small(steps=40, chunks=4), should_stop=lambda: True)
    assert r.status == "interrupted" and len(r.metrics["loss"]) == 10


@pytest.mark.long  # run by .ci/run after the fast suite
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("model", ["mlp", "resmlp"])
def test_models_and_norms_run(model, norm):
    r = run(small(model=ModelConfig(name=model, res_scale=0.5), norm=norm))
    assert np.isfinite(r.traces.delta).all() and r.status == "completed"


@pytest.mark.long  # run by .ci/run after the fast suite
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizers_reduce_the_loss(name):
    lr = {"sgd": 0.1, "momentum": 0.05, "adam": 3e-3, "rmsprop": 1e-3, "rprop": 1e-3}[name]
    batch = 1024 if name == "rprop" else 16  # sign-based steps need (nearly) full batches
    r = run(small(steps=100, act="relu", init=InitConfig(name="he"), batch_size=batch,
                  optimizer=OptimizerConfig(name=name, lr=lr)))
    assert r.metrics["loss"][-10:].mean() < r.metrics["loss"][:10].mean()


@pytest.mark.long  # run by .ci/run after the fast suite
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_run(schedule):
    assert run(small(optimizer=OptimizerConfig(schedule=schedule, warmup_steps=5))).status == "completed"


def data_config(name, **kw):
    """The dataset `name`'s config; data=custom's arrays from tests/custom_models.py."""
    return DataConfig(name=name, target="custom_models:blobs" if name == "custom" else None, **kw)


@pytest.mark.parametrize("name", DATASETS)
def test_datasets_have_a_held_out_split(name):
    d = datasets.load(data_config(name))
    assert len(d.x_test) > 0 and len(d.x_train) > 2 * len(d.x_test)
    assert d.x_train.shape[1] == d.x_test.shape[1]
    assert run(small(data=data_config(name))).status == "completed"


@pytest.mark.parametrize("name", DATASETS)
def test_inputs_standardized_and_scaled(name):
    """data.inputs=standardize: zero mean and unit variance per feature over the training set (a
    constant feature stays 0), the held-out set shifted and scaled by the same numbers; then input_scale."""
    raw = datasets.load(data_config(name))
    std = datasets.load(data_config(name, inputs="standardize", input_scale=3.0))
    mean, sd = raw.x_train.mean(0), raw.x_train.std(0)
    live = sd > 0
    np.testing.assert_allclose(std.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(std.x_train.std(0)[live], 3.0, rtol=1e-4)
    assert (std.x_train[:, ~live] == 0).all()
    expected = (raw.x_test - mean) / np.where(live, sd, 1.0) * 3.0
    np.testing.assert_allclose(std.x_test, expected, rtol=1e-5, atol=1e-5)
    assert std.x_train.dtype == raw.x_train.dtype and (std.y_train == raw.y_train).all()


def test_clip_by_global_norm_bounds_the_update():
    cfg = small(act="linear", optimizer=OptimizerConfig(lr=1.0, clip_norm=1e-3), steps=10, chunks=1)
    r = run(cfg)
    # plain sgd with lr 1: the update is the clipped gradient, so its global norm is <= 1e-3
    upd = r.traces.update_ratio * r.traces.weight  # [T, L] per-layer |dW|
    assert (np.sqrt((upd**2).sum(1)) <= 1e-3 * (1 + 1e-5)).all()
    assert (r.metrics["grad_norm"] > 1e-3).all()  # it did clip


@pytest.mark.optimized
def test_float64_measures_below_float32_range():
    cfg = small(act="sigmoid", depth=80, width=32, steps=2, chunks=1, dtype="float64")
    r = run(cfg)
    assert r.traces.delta.dtype == np.float64
    assert 0 < r.traces.delta[0, 0] < 1e-38  # beyond float32's smallest normal, yet measured
    jax.config.update("jax_enable_x64", False)


def test_jobs_of_one_signature_share_a_compiled_program_and_get_their_own_results():
    """A sweep's later jobs reuse the program of an earlier one with the same static
    signature (vgrun.config.hyper); their results equal those of a fresh program."""
    a = small(optimizer=OptimizerConfig(lr=0.05), seed=3)
    b = small(optimizer=OptimizerConfig(lr=0.2), seed=4)
    cache = ProgramCache(keep=4)
    first = train.run(a, cache=cache)
    (program, compiled), = cache.entries()
    shared = train.run(b, cache=cache)  # b's program is a's
    (program_b, compiled_b), = cache.entries()
    assert program_b is program and compiled_b is compiled and len(compiled) == 4 and compiled[3] is None
    alone = train.run(b, cache=ProgramCache(keep=4))
    for f in alone.traces._fields:
        np.testing.assert_array_equal(getattr(shared.traces, f), getattr(alone.traces, f))
    np.testing.assert_array_equal(shared.metrics["loss"], alone.metrics["loss"])
    assert not np.array_equal(first.metrics["loss"], alone.metrics["loss"])
    train.run(small(depth=4), cache=cache)  # another signature: another program
    assert len(cache) == 2


@pytest.mark.optimized
def test_update_norms_when_the_output_update_overflows():
    """Plain SGD: |update_l| = c |dL/dW_l|, c read off the output layer (optim.scales_gradient).
    Here lr is so large that the output layer's update overflows to inf while the others stay
    finite: c is undefined there, and the update norms must still be measured layer by layer
    (a finite |update_l| for the finite layers, not inf or NaN for every layer)."""
    import jax.numpy as jnp

    from vgrun.data.problem import from_data

    cfg = Config(depth=2, width=4, act="linear", batch_size=8, steps=1, chunks=1, optimizer=OptimizerConfig(lr=1e38))
    x = np.random.default_rng(0).uniform(0.5, 1.0, (8, 3)).astype(np.float32)
    y = np.arange(8, dtype=np.int32) % 2
    prog = program.make_train(cfg, from_data(datasets.Dataset(x, y, x, y, 2, True), jnp.float32))
    # h_0 ~ 20, h_1 ~ 80, logits ~ 0.1: dW_out ~ 40, its update 4e39 = inf; dW_hid ~ 0.02 and dW_inp ~ 0.003
    params = {"inp": {"w": jnp.full((3, 4), 10.0), "b": jnp.zeros(4)},
              "hid": {"w": jnp.ones((1, 4, 4)), "b": jnp.zeros((1, 4))},
              "out": {"w": jnp.asarray([[1e-3, -1e-3]] * 4), "b": jnp.zeros(2)}}
    carry = prog.init(jax.random.PRNGKey(0))._replace(params=params)
    _, (_, trace) = prog.chunk(carry, prog.problem.arrays)
    grad_w, upd = np.asarray(trace.grad_w[0]), np.asarray(trace.update_ratio[0] * trace.weight[0])
    assert np.isfinite(grad_w).all() and (grad_w > 0).all()
    np.testing.assert_allclose(upd[:2], 1e38 * grad_w[:2], rtol=1e-6)  # the update is -lr * g
    assert np.isfinite(upd[:2]).all() and np.isinf(upd[2])


@pytest.mark.long  # off by default; the fast suite keeps the counts themselves (tests/test_gradients.py)
def test_histograms_at_step_0_and_every_chunk_end_for_each_member(tmp_path):
    from vgrun.config import hyper
    from vgrun.io import store
    from vgrun.io.frames import run_frames
    from vgrun.probes.histograms import N_COUNTS

    cfg = small(histograms=True)
    a, b = programs.run_members(cfg, [hyper.values(cfg)] * 2)  # two seeds, one vmapped program
    for r in (a, b):
        h = r.histograms
        assert list(h["step"]) == [0, 10, 20]  # step 0, then after each of the 2 chunks
        assert h["weight"].shape == h["grad_w"].shape == h["delta"].shape == (3, cfg.depth + 1, N_COUNTS)
        sizes = [64 * 16] + [16 * 16] * (cfg.depth - 1) + [16 * 10]  # digits: 64 inputs, 10 classes
        np.testing.assert_array_equal(h["weight"].sum(-1), np.tile(sizes, (3, 1)))
        np.testing.assert_array_equal(h["delta"].sum(-1), np.tile([16 * 16] * cfg.depth + [16 * 10], (3, 1)))
    assert not np.array_equal(a.histograms["delta"], b.histograms["delta"])  # each member its own
    store.write_frames(tmp_path, run_frames(cfg, a.metrics, a.traces, histograms=a.histograms))
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "histograms.parquet")
    assert frame.groupby(["quantity", "step", "layer"])["count"].sum().loc["weight", 0].tolist() == sizes
