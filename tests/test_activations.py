import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrun.nn.activations import ACTIVATIONS
from vgrun.config.names import ACTS



@pytest.fixture(autouse=True)
def _float64():
    """float64 in this module's tests only (tests/conftest.py restores the flag after each test)."""
    jax.config.update("jax_enable_x64", True)


Z = np.linspace(-6, 6, 2001)  # float64; made a JAX array inside the tests, where float64 is on
Z = Z[np.abs(Z) > 1e-6]  # relu-like kinks at 0 have no derivative
Z = Z[np.abs(np.abs(Z) - 1) > 1e-6]  # hard_tanh kinks at +-1


def test_names_match_registry():
    assert tuple(ACTIVATIONS) == ACTS


@pytest.mark.parametrize("name", ACTS)
def test_derivative_matches_autodiff(name):
    act = ACTIVATIONS[name]
    z = jnp.asarray(Z)
    auto = jax.vmap(jax.grad(act.fn))(z)
    np.testing.assert_allclose(act.deriv(z), auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in ACTS if ACTIVATIONS[n].slope_of_output is not None])
def test_slope_from_the_output_is_the_derivative(name):
    act = ACTIVATIONS[name]
    z = jnp.asarray(Z)
    np.testing.assert_allclose(act.slope_of_output(act.fn(z)), act.deriv(z), rtol=1e-9, atol=1e-12)


def test_the_monotone_activations_give_their_slope_from_the_output():
    """Where the output does not determine the slope (non-monotone or not invertible), none is claimed."""
    assert {n for n in ACTS if ACTIVATIONS[n].slope_of_output is None} == {"gelu", "silu", "gcu"}


@pytest.mark.parametrize("name", [n for n in ACTS if n != "gcu"])
def test_peak_is_the_sup_of_the_slope(name):
    slope = jnp.abs(ACTIVATIONS[name].deriv(jnp.linspace(-20, 20, 400_001, dtype=jnp.float64)))
    assert float(slope.max()) == pytest.approx(ACTIVATIONS[name].peak, rel=1e-3)


def test_gcu_is_x_cos_x_and_peak_is_its_slope_at_zero():
    x = jnp.array([0.0, 1.0, -2.0], jnp.float64)
    np.testing.assert_allclose(ACTIVATIONS["gcu"].fn(x), x * np.cos(x))
    assert ACTIVATIONS["gcu"].deriv(jnp.zeros(())) == ACTIVATIONS["gcu"].peak == 1.0
