import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrun.config import InitConfig
from vgrun.inits import INITS, init_bias, init_weight, weight_stats
from vgrun.names import INIT_NAMES

FAN_IN, FAN_OUT, LAYERS = 200, 300, 8


def test_names_match_registry():
    assert tuple(INITS) == INIT_NAMES


@pytest.mark.parametrize("name", INIT_NAMES)
def test_weights_have_the_promised_mean_and_std(name):
    cfg = InitConfig(name=name, gain=1.5 if name in ("xavier", "orthogonal", "he") else 1.0)
    w = np.asarray(init_weight(jax.random.PRNGKey(0), cfg, (LAYERS, FAN_IN, FAN_OUT)), np.float64)
    mean, std = weight_stats(cfg, FAN_IN, FAN_OUT)
    n = w.size
    assert abs(w.mean() - mean) < 5 * std / math.sqrt(n)
    assert w.std() == pytest.approx(std, rel=5 * math.sqrt(2 / n) + 1e-3)


FORMULAS = {  # (mean, std) from the papers, for FAN_IN x FAN_OUT
    "standard": (0.0, 1 / math.sqrt(3 * FAN_IN)),
    "xavier": (0.0, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    "xavier_uniform": (0.0, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    "he": (0.0, math.sqrt(2 / FAN_IN)),
    "lecun": (0.0, math.sqrt(1 / FAN_IN)),
    "orthogonal": (0.0, 1 / math.sqrt(FAN_OUT)),
    "normal": (0.0, 1 / math.sqrt(FAN_IN)),
    "kumar": (0.0, 3.6 / math.sqrt(FAN_IN)),
    "yilmaz_poli": (max(-1.0, -8.0 / FAN_IN), 1 / math.sqrt(FAN_IN)),
}


@pytest.mark.parametrize("name", INIT_NAMES)
def test_scheme_formulas(name):
    assert weight_stats(InitConfig(name=name), FAN_IN, FAN_OUT) == pytest.approx(FORMULAS[name])


def test_overrides_std_mean_sigma_w():
    assert weight_stats(InitConfig(name="normal", sigma_w=2.0), 100, 100) == pytest.approx((0.0, 0.2))
    assert weight_stats(InitConfig(name="he", std=0.5, mean=-0.1), 100, 100) == pytest.approx((-0.1, 0.5))
    assert weight_stats(InitConfig(name="yilmaz_poli"), 4, 4)[0] == -1.0  # max(-1, -8/N) clips at -1


def test_uniform_schemes_stay_in_their_interval():
    w = init_weight(jax.random.PRNGKey(1), InitConfig(name="standard"), (FAN_IN, FAN_OUT))
    assert float(jnp.abs(w).max()) <= 1 / math.sqrt(FAN_IN)


def test_orthogonal_is_orthogonal_per_layer():
    w = np.asarray(init_weight(jax.random.PRNGKey(2), InitConfig(name="orthogonal", gain=2.0), (3, 64, 64)), np.float64)
    for layer in w:
        np.testing.assert_allclose(layer.T @ layer, 4.0 * np.eye(64), atol=1e-4)


def test_bias_std():
    b = np.asarray(init_bias(jax.random.PRNGKey(3), InitConfig(sigma_b=0.3), (100_000,)))
    assert b.std() == pytest.approx(0.3, rel=0.02)
    assert not init_bias(jax.random.PRNGKey(3), InitConfig(), (10,)).any()
