import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrun.science import theory
from vgrun.config.schema import Config, InitConfig
from vgrun.data.datasets import Dataset
from vgrun.science.verdict import per_layer_factor
from vgrun.data.problem import from_data
from vgrun.training.program import make_train


def test_relu_he_is_critical():
    p = theory.predict("relu", 2.0, 0.0)
    assert p["chi_1"] == pytest.approx(1.0, abs=1e-9)
    assert p["depth_scale"] == math.inf


@pytest.mark.parametrize("sw2", [0.3, 0.5, 0.9])
def test_tanh_ordered_phase_without_bias_has_q_star_zero_and_chi_sigma_w2(sw2):
    p = theory.predict("tanh", sw2, 0.0)
    assert p["q_star"] < 1e-10
    assert p["chi_1"] == pytest.approx(sw2, rel=1e-8)


@pytest.mark.parametrize("sw2", [0.999, 1.0])
def test_tanh_at_the_edge_of_chaos_reaches_q_star_zero(sw2):
    """The default job (tanh, xavier: sigma_w^2 = 1, no bias): q_l falls like 1 / (2 l), so no
    number of plain fixed-point steps gets there (5000 stopped at q = 1e-4, chi_1 = 0.9998)."""
    p = theory.predict("tanh", sw2, 0.0)
    assert p["q_star"] < 1e-12
    assert p["chi_1"] == pytest.approx(sw2, rel=1e-12)
    assert (p["depth_scale"] == math.inf) if sw2 == 1.0 else p["depth_scale"] == pytest.approx(1 / -math.log(sw2))


def _tanh_q_star_gauss_hermite(sw2: float) -> float:
    """An independent solve: Gauss-Hermite quadrature (exact for smooth integrands) and plain bisection."""
    z, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    lo, hi = 1e-9, 1.0  # F(q) > q below the fixed point, F(q) < q above it
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sw2 * np.sum(w * np.tanh(np.sqrt(mid) * z) ** 2) >= mid else (lo, mid)
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("sw2", [1.001, 1.01, 1.1])
def test_tanh_just_past_the_edge_of_chaos_matches_an_independent_solve(sw2):
    p = theory.predict("tanh", sw2, 0.0)
    q = _tanh_q_star_gauss_hermite(sw2)
    assert p["q_star"] == pytest.approx(q, rel=1e-8)
    assert p["q_star"] == pytest.approx((1 - 1 / sw2) / 2, rel=0.2)  # tanh^2 x = x^2 - 2/3 x^4 + ...
    z, w = np.polynomial.hermite_e.hermegauss(200)
    assert p["chi_1"] == pytest.approx(sw2 * np.sum(w / w.sum() / np.cosh(np.sqrt(q) * z) ** 4), rel=1e-10)


@pytest.mark.parametrize("act,sw2", [("relu", 2.0), ("linear", 1.0)])
def test_marginal_growth_with_a_bias_has_no_finite_fixed_point(act, sw2):
    """F(q) = q + sigma_b^2: q grows by sigma_b^2 a layer for ever (not a crossing made of rounding)."""
    assert theory.predict(act, sw2, 0.1)["q_star"] == math.inf


def test_linear_chi_is_sigma_w2_and_q_grows_without_bound_above_one():
    assert theory.predict("linear", 0.7, 0.1)["chi_1"] == pytest.approx(0.7, rel=1e-10)
    assert theory.predict("linear", 1.5, 0.0)["q_star"] == math.inf


@pytest.mark.parametrize("act,sw2,sb2", [("hard_tanh", 1.5, 0.0), ("tanh", 1.5, 0.05), ("sigmoid", 1.0, 0.0), ("elu", 1.2, 0.1)])
def test_against_monte_carlo(act, sw2, sb2):
    from vgrun.nn.activations import ACTIVATIONS

    p = theory.predict(act, sw2, sb2)
    z = np.random.default_rng(0).standard_normal(4_000_000)
    u = np.sqrt(p["q_star"]) * z
    fn, d = ACTIVATIONS[act].fn, ACTIVATIONS[act].deriv
    with jax.enable_x64(True):
        q_next = sw2 * float(jnp.mean(fn(jnp.asarray(u)) ** 2)) + sb2
        chi = sw2 * float(jnp.mean(d(jnp.asarray(u)) ** 2))
    assert q_next == pytest.approx(p["q_star"], rel=3e-3)  # q* is a fixed point
    assert chi == pytest.approx(p["chi_1"], rel=3e-3)


def test_deep_tanh_net_decays_at_the_predicted_rate():
    """Width 256, sigma_w^2 = 0.5: |delta_l| / |delta_l+1| -> sqrt(chi_1), within 10%."""
    cfg = Config(depth=30, width=256, act="tanh", batch_size=128, steps=1, chunks=1,
                 init=InitConfig(name="normal", sigma_w=math.sqrt(0.5)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 256)).astype(np.float32)
    y = rng.integers(0, 10, 512).astype(np.int32)
    data = Dataset(x, y, x, y, 10, True)
    prog = make_train(cfg, from_data(data, jnp.float32))
    d = prog.problem.arrays
    _, (_, trace) = prog.chunk(prog.init(jax.random.PRNGKey(0)), d)
    delta = np.asarray(trace.delta[0, : cfg.depth], np.float64)
    measured = per_layer_factor(delta[5:])  # past the input layer's transient
    predicted = theory.predict("tanh", 0.5, 0.0)["factor"]
    assert measured == pytest.approx(predicted, rel=0.10)
    assert delta[0] < 1e-3 * delta[-1]  # and it really vanishes


def test_isometry_moments_of_linear_networks_are_exact():
    """Linear layers: mu_1 = mu_2 = 1, so Var(lambda) = L for Gaussian weights and 0 for orthogonal."""
    from vgrun.science.theory import isometry

    gauss, orth = isometry("linear", 1.0, 0.0, 7, False), isometry("linear", 1.0, 0.0, 7, True)
    assert gauss["mean"] == pytest.approx(1.0) and gauss["var"] == pytest.approx(7.0)
    assert orth["var"] == pytest.approx(0.0, abs=1e-9)


def test_critical_point_puts_q_star_at_the_chosen_variance_with_chi_one():
    from vgrun.science.theory import critical_point, predict

    sigma_w2, sigma_b2 = critical_point("tanh", 1 / 64)
    p = predict("tanh", sigma_w2, sigma_b2)
    assert p["q_star"] == pytest.approx(1 / 64, rel=1e-6) and p["chi_1"] == pytest.approx(1.0, rel=1e-9)


def test_measured_jacobian_spectrum_of_orthogonal_linear_layers_is_one():
    """An independent check of the measurement: a product of orthogonal matrices is orthogonal."""
    from vgrun.config.schema import Config, InitConfig
    from vgrun.science.isometry import measure

    r = measure(Config(act="linear", init=InitConfig(name="orthogonal"), depth=5, width=16), examples=2)
    assert r["layers"] == 4 and r["measured"]["mean"] == pytest.approx(1.0, rel=1e-4)
    assert r["measured"]["var"] < 1e-8 and r["predicted"]["var"] == pytest.approx(0.0, abs=1e-9)
