"""Gradient-free training: every optimizer improves a small problem without any derivative,
and a run gives the usual train.Result with the supervised gradient traced anyway."""

from pathlib import Path

import jax
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from jax._src.interpreters import ad
from omegaconf import OmegaConf

from vgrun.training import evolve
from vgrun.nn import mlp
import programs
from vgrun.training import loop as train
from vgrun.config.schema import ConfigError, validate
from vgrun.cli.main import register_schema
from vgrun.config.names import GRADIENT_FREE, OPTIMIZERS

CONF = str(Path(__file__).parents[1] / "vgrun" / "conf")
register_schema()
SMALL = ["data=spirals", "act=tanh", "depth=2", "width=8", "batch_size=256", "init=xavier"]  # 123 parameters


def compose_config(overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        dcfg = compose("config", overrides=list(overrides))
    return validate(OmegaConf.to_object(dcfg))


def test_names_match_the_registry():
    assert tuple(evolve.ALGORITHMS) == GRADIENT_FREE and not set(GRADIENT_FREE) & set(OPTIMIZERS)


class NoDerivatives:
    """Any derivative raises while active: forward mode (jax.jvp) traces through ad.JVPTrace,
    reverse mode (jax.grad, jax.vjp, jax.linearize) through ad.LinearizeTrace."""

    TRACES = (ad.JVPTrace, ad.LinearizeTrace)

    def __enter__(self):
        self.saved = [t.process_primitive for t in self.TRACES]

        def refuse(*args, **kwargs):
            raise AssertionError("a derivative was taken")

        for t in self.TRACES:
            t.process_primitive = refuse

    def __exit__(self, *exc):
        for t, f in zip(self.TRACES, self.saved):
            t.process_primitive = f


@pytest.mark.parametrize("derivative", [lambda f: jax.grad(f)(1.0), lambda f: jax.jit(jax.grad(f))(2.0),
                                        lambda f: jax.jvp(f, (1.0,), (1.0,)), lambda f: jax.vjp(f, 1.0)[1](1.0)])
def test_the_guard_catches_a_derivative(derivative):
    with NoDerivatives(), pytest.raises(AssertionError, match="derivative"):
        derivative(lambda x: jax.numpy.sin(x) * x)


# 5-7 s each: with the long tests; the fast suite keeps a gradient-free run's traces (below)
@pytest.mark.long
@pytest.mark.parametrize("name", GRADIENT_FREE)
def test_optimizer_improves_loss_without_gradient(name):
    cfg = compose_config([f"optimizer={name}", *SMALL, "optimizer.popsize=32", "optimizer.sigma=0.05", "steps=300"])
    prog = evolve.make(cfg)
    a = prog.problem.arrays

    def train_loss(carry):  # on the whole training set
        y_pred, _, _ = mlp.make(cfg, 2, 3, np.float32, cfg.diagnosis.sat_tol).apply(carry.params, carry.state, a["x"],
                                                                                     train=False)
        return float(prog.problem.loss_and_acc(y_pred, a["y"])[0])

    carry = prog.init(jax.random.PRNGKey(0))
    start = train_loss(carry)
    run = jax.jit(lambda c: jax.lax.scan(lambda c, _: prog.generation(c, a), c, length=300))
    with NoDerivatives():  # tracing and compiling the generations happens here: any derivative would raise
        carry, _ = run(carry)
    end = train_loss(carry)
    assert np.isfinite(end) and end < start - 0.02, (start, end)


def test_run_returns_a_result_with_gradient_traces():
    cfg = compose_config(["optimizer=openai_es", "act=sigmoid", "depth=6", "width=8", "steps=20", "trace_every=5",
                          "chunks=2", "optimizer.popsize=16"])
    r = programs.run(cfg)  # dispatched to evolve.run
    assert r.status == "completed" and len(r.metrics["loss"]) == 20
    assert r.traces.delta.shape == (4, 7) and np.isfinite(r.traces.delta).all()
    # the traced gradient vanishes toward the input in a deep sigmoid net: measured, not used
    assert r.traces.delta[0, 0] < 0.1 * r.traces.delta[0, 5]
    grad_norm = r.metrics["grad_norm"]
    assert np.isfinite(grad_norm[::5]).all() and np.isnan(grad_norm[1:5]).all()
    assert np.isfinite(r.metrics["pop_best"]).all() and np.isfinite(r.test).all()


def test_full_cma_es_refuses_a_large_network():
    cfg = compose_config(["optimizer=cma_es", "depth=4", "width=64"])
    with pytest.raises(ConfigError, match="sep_cma_es"):
        evolve.make(cfg)


@pytest.mark.parametrize("args, key", [(["optimizer=ga", "model=lstm", "data=adding"], "model (optimizer=ga)"),
                                       (["optimizer=openai_es", "optimizer.popsize=1"], "optimizer.popsize"),
                                       (["optimizer=ga", "optimizer.sigma=0"], "optimizer.sigma"),
                                       (["optimizer=ga", "pretrain=autoencoder"], "pretrain")])
def test_bad_gradient_free_config_is_one_clear_error(args, key):
    with pytest.raises(ConfigError) as e:
        compose_config(args)
    assert e.value.key == key
