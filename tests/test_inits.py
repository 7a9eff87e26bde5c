import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrun.config.schema import InitConfig
from vgrun.nn.inits import INITS, SMALL_DRAW, _size_groups, init_bias, init_many, init_weight, weight_stats
from vgrun.config.names import INIT_NAMES

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


@pytest.mark.long  # run by .ci/run after the fast suite
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", INIT_NAMES)
def test_init_many_equals_the_draws_one_by_one(name, dtype):
    """init_many shares one random kernel among draws of similar size (a vmap over their
    keys, each sliced from a draw of the group's largest size): every array must still be
    bit for bit the one init_weight / init_bias draws alone, so seeds keep their weights."""
    jax.config.update("jax_enable_x64", dtype == jnp.float64)  # tests/conftest.py restores it
    cfg = InitConfig(name=name, gain=1.3, sigma_b=0.2, mean=0.01 if name == "normal" else None)
    shapes = [(64, 128), (128,), (19, 128, 128), (19, 128), (128, 10), (10,), (3, 5, 7), (1,)]
    kinds = ["bias" if len(s) == 1 or s == (19, 128) else "weight" for s in shapes]
    keys = jax.random.split(jax.random.PRNGKey(11), len(shapes))
    requests = [(k, s, kind) for k, s, kind in zip(keys, shapes, kinds)]
    many = init_many(requests, cfg, dtype)
    jitted = jax.jit(lambda: init_many(requests, cfg, dtype))()
    eps = float(jnp.finfo(dtype).eps)
    for k, s, kind, got, in_program in zip(keys, shapes, kinds, many, jitted):
        alone = (init_bias if kind == "bias" else init_weight)(k, cfg, s, dtype)
        assert got.shape == s and got.dtype == alone.dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(alone), err_msg=f"{name} {kind} {s}")
        # in a program XLA may round the std's scaling differently: 1 ulp of std * z (+ the mean's rounding)
        mean = 0.0 if kind == "bias" else weight_stats(cfg, s[-2], s[-1])[0]
        a, b = np.asarray(in_program, np.float64), np.asarray(alone, np.float64)
        assert np.all(np.abs(a - b) <= 1.01 * eps * (np.abs(b - mean) + 2 * abs(mean))), f"{name} {kind} {s} (jitted)"


def test_size_groups_pad_at_most_double():
    sizes = [311296, 8192, 1280, 2432, 128, 10]
    groups = _size_groups(sizes)
    assert sorted(i for g in groups for i in g) == list(range(len(sizes)))
    for g in groups:
        padded, actual = sizes[g[0]] * len(g), sum(sizes[i] for i in g)
        assert sizes[g[0]] == max(sizes[i] for i in g)
        assert padded <= max(SMALL_DRAW, 2 * actual)
    assert len(groups) < len(sizes)  # the small ones do share
