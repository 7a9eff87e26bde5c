"""Every config composes through Hydra, validates, and the name lists match the registries."""

import types
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vgrun.data import datasets as data
from vgrun import nn as models
from vgrun.training import optim
from vgrun.data import tasks
from vgrun.config.schema import Config, ConfigError, ModelConfig, OptimizerConfig, validate
from vgrun.cli.main import register_schema
from vgrun.config.names import DATA, MODELS, OPTIMIZERS, RECURRENT, TASKS
from vgrun.config.overrides import check, group_options

CONF = str(Path(__file__).parents[1] / "vgrun" / "conf")
register_schema()


def compose_config(overrides=()) -> Config:
    with initialize_config_dir(config_dir=CONF, version_base=None):
        dcfg = compose("config", overrides=list(overrides))
    return validate(OmegaConf.to_object(dcfg))


def test_registries_match_names():
    """Every valid name has an implementation (the names are defined once, in vgrun.config.names)."""
    for name in OPTIMIZERS:
        optim.make(OptimizerConfig(name=name), steps=10)
    for name in MODELS:
        if name != "doya":  # an analysis, not a trained network (vgrun.science.doya)
            problem = types.SimpleNamespace(n_in=3, n_out=2, n_out_steps=1, seq_steps=5)
            target = "custom_models:sigmoid_pair" if name == "custom" else None  # tests/custom_models.py
            model = models.make_model(Config(model=ModelConfig(name=name, target=target)), problem)
            assert model.recurrent == (name in RECURRENT)
    assert tuple(data.DATASETS) + tuple(tasks.TASKS) == DATA


@pytest.mark.parametrize("group", ["model", "init", "optimizer", "data"])
def test_every_group_option_composes_and_validates(group):
    for option in group_options(group):
        pair = []  # recurrent models train on sequence tasks, feed-forward ones on datasets
        if group == "model" and option in RECURRENT:
            pair = ["data=adding"]
        if group == "model" and option == "custom":
            pair = ["model.target=custom_models:sigmoid_pair"]
        if group == "data" and option == "custom":
            pair = ["data.target=custom_models:blobs"]
        if group == "data" and option in TASKS:
            pair = ["model=rnn"]
        cfg = compose_config([f"{group}={option}", *pair])
        assert getattr(cfg, group).name == option


def test_recurrent_models_need_sequence_tasks():
    with pytest.raises(ConfigError, match="sequence task"):
        compose_config(["model=rnn"])
    with pytest.raises(ConfigError, match="recurrent model"):
        compose_config(["data=adding"])
    assert compose_config(["model=lstm", "data=adding"]).depth == 1  # the model group sets depth


def test_defaults():
    cfg = compose_config()
    assert (cfg.model.name, cfg.init.name, cfg.optimizer.name, cfg.data.name) == ("mlp", "xavier", "sgd", "digits")
    assert (cfg.width, cfg.batch_size, cfg.steps, cfg.trace_every) == (128, 128, 2000, 1)


def test_overrides_reach_the_dataclass():
    cfg = compose_config(["init=normal", "init.sigma_w=1.5", "init.sigma_b=0.05", "optimizer=adam",
                          "optimizer.clip_norm=1.0", "model=resmlp", "model.res_scale=0.1", "dtype=float64"])
    assert (cfg.init.sigma_w, cfg.init.sigma_b, cfg.optimizer.clip_norm, cfg.model.res_scale) == (1.5, 0.05, 1.0, 0.1)


@pytest.mark.parametrize("args", [["act=sigmod"], ["init=foo"], ["optimizer.lr=abc"], ["foo=1"], ["depth=2.5"],
                                  ["optimizer.clip_norm=x"], ["norm=groupnorm"], ["dtype=float16"]])
def test_check_rejects(args):
    with pytest.raises(ConfigError):
        check(args)


@pytest.mark.parametrize("args", [["-m", "act=sigmoid", "depth=5,10", "init=xavier,he"], ["-m", "init=glob(xavier*)"],
                                  ["optimizer.clip_norm=null"],
                                  ["hydra.run.dir=x"], ["init.gain=2"], ["optimizer.lr=1"]])
def test_check_accepts(args):
    check(args)
