"""Every preset under conf/experiment composes, validates and runs a few steps."""

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import programs
from vgrun.training import loop as train
from vgrun.config.schema import validate
from vgrun.cli.main import register_schema
from vgrun.config.overrides import group_options

CONF = str(Path(__file__).parents[1] / "vgrun" / "conf")
register_schema()


@pytest.mark.parametrize("preset", group_options("experiment"))
def test_preset_composes_and_validates(preset):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        dcfg = compose("config", overrides=[f"+experiment={preset}"])
    cfg = validate(OmegaConf.to_object(dcfg))
    assert cfg.steps % cfg.trace_every == 0


@pytest.mark.long  # run by .ci/run after the fast suite
@pytest.mark.parametrize("preset", group_options("experiment"))
def test_preset_runs_a_few_steps(preset, tmp_path):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        dcfg = compose("config", overrides=[f"+experiment={preset}", "check=false"])
        if dcfg.model.name != "doya":  # a trained network: a few steps (doya refuses training keys)
            dcfg = compose("config", overrides=[f"+experiment={preset}", "steps=4", "trace_every=2", "chunks=1",
                                                "optimizer.warmup_steps=2",
                                                "pretrain.steps=4", "pretrain.log_every=2", "check=false"])
    cfg = validate(OmegaConf.to_object(dcfg))
    if cfg.model.name == "doya":  # not trained: the one-neuron analysis, on a coarse grid
        from dataclasses import replace

        from vgrun.science import doya

        out = doya.analyze(replace(cfg.doya, n_b=61, gd_steps=4))
        assert out["bistable"]["b_lo"] < out["bistable"]["b_hi"]
        return
    from vgrun.training.program import resolve

    r = programs.run(resolve(cfg)[0])  # a custom network's depth: its taps
    assert r.status in ("completed", "diverged") and len(r.metrics["loss"]) >= 2
    assert np.isfinite(r.traces.delta[0]).all()


def test_a_figure_title_names_every_setting_that_differs_from_the_defaults():
    from vgrun.viz.plots import run_title

    def title(preset, *extra):
        with initialize_config_dir(config_dir=CONF, version_base=None):
            dcfg = compose("config", overrides=[f"+experiment={preset}", *extra])
        return run_title(validate(OmegaConf.to_object(dcfg)), {"headline": "VANISHING at initialization"})

    plain, clipped = title("rnn_exploding"), title("rnn_exploding", "optimizer.clip_norm=1")
    assert "optimizer.clip_norm=1" in clipped and "clip_norm" not in plain and "model.rec_radius=3" in plain
    assert title("he2015", "init=he").startswith("mlp ") and "init=he" in title("he2015", "init=he")
    assert title("he2015").endswith("\nVANISHING at initialization")
