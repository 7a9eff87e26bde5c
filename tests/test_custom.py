"""model=custom: a researcher's own network (tests/custom_models.py) trained and traced as vgrun's own."""

import numpy as np

import vgrun


def test_an_init_apply_pair_is_traced_at_its_taps_and_judged():
    cfg = vgrun.compose(["model=custom", "model.target=custom_models:sigmoid_pair", "steps=20", "chunks=1",
                         "trace_every=10"])
    run = vgrun.train(cfg)
    assert run.cfg.depth == 8  # eight taps, then the output
    delta = run.result.traces.delta  # [traced steps, 9]
    assert delta.shape == (2, 9) and np.all(np.isfinite(delta)) and np.all(delta > 0)
    assert np.all(np.isnan(run.result.traces.grad_w))  # taps are activations: no weight of their own
    d = vgrun.diagnose(run)
    assert d["gradient"]["init"] == "vanishing"  # eight sigmoid layers: |delta| falls ~4x a layer
    assert d["ratio_first_last_init"] == delta[0, 0] / delta[0, 7]
    assert d["nonfinite"] == {"delta": 0, "act_mean": 0, "act_std": 0, "loss": 0, "grad_norm": 0}


def test_a_flax_nnx_module_with_batch_statistics_trains_and_carries_them(tmp_path):
    cfg = vgrun.compose(["model=custom", "model.target=custom_models:nnx_batchnorm", "steps=30", "chunks=1",
                         "trace_every=10", "optimizer.lr=0.1"])
    run = vgrun.train(cfg)
    assert run.cfg.depth == 2
    loss = run.result.metrics["loss"]
    assert loss[-5:].mean() < 0.8 * loss[0]
    means = [v for v in __import__("jax").tree_util.tree_leaves(run.results[0].carry.state)]
    assert any(np.abs(np.asarray(m)).max() > 0 for m in means)  # running means moved off their zeros
    folder = vgrun.save(run, tmp_path / "run")
    frame = vgrun.load_run(folder)
    assert sorted(frame["layer"].unique()) == [0, 1, 2]
    leaves = vgrun.load_run(folder, "leaves")  # each parameter leaf by module path, at every traced step
    assert list(leaves["leaf"][:3]) == ["a/bias", "a/kernel", "b/bias"] and leaves["layer"][1] == "a"
    assert len(leaves) == 3 * 10 and (leaves["grad"] > 0).all()
    kernel = leaves[leaves["leaf"] == "a/kernel"]["weight"].to_numpy()
    assert kernel[0] != kernel[-1]  # trained


def test_a_network_without_taps_is_traced_at_its_input_and_its_leaves():
    cfg = vgrun.compose(["model=custom", "model.target=custom_models:untapped", "steps=10", "chunks=1",
                         "trace_every=10"])
    run = vgrun.train(cfg)
    assert run.names["layers"] == ["input (no taps)", "output"] and run.names["leaves"] == ["w"]
    d = vgrun.diagnose(run)
    delta = run.result.traces.delta[0]  # |dL/dx| at the input, |dL/dy| at the output
    assert d["ratio_first_last_init"] == delta[0] / delta[1] and "1 layer, to the output" in d["headline"]


def test_image_batches_reach_a_convolution_and_custom_arrays_load():
    """An Equinox module with a convolution: trained a step per call (vgrun.training.program.HostChunk)."""
    cfg = vgrun.compose(["model=custom", "model.target=custom_models:eqx_conv", "data.images=true", "steps=10",
                         "chunks=2", "trace_every=5"])
    run = vgrun.train(cfg)
    assert run.result.problem.x_shape == (8, 8, 1) and run.cfg.depth == 1
    assert run.names["leaves"] == ["conv/weight", "conv/bias", "out/weight", "out/bias"]
    assert run.result.traces.delta.shape == (2, 2) and np.isfinite(run.result.traces.delta).all()
    assert run.result.metrics["loss"].shape == (10,) and np.isfinite(run.result.metrics["test_loss"][[0, 5]]).all()

    from vgrun.config.schema import DataConfig
    from vgrun.data.datasets import custom

    data = custom(DataConfig(name="custom", target="custom_models:blobs"))
    assert data.classify and data.n_out == 2 and data.x_train.shape == (225, 5) and data.y_test.dtype == np.int32
