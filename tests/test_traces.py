import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vgrun.traces import global_norm, safe_norm


def test_tiny_entries_give_their_true_norm_not_zero():
    x = jnp.full((1000,), 1e-22, jnp.float32)
    assert float(jnp.sqrt(jnp.sum(x**2))) == 0.0  # the naive norm underflows...
    assert float(optax.tree.norm(x)) == 0.0
    assert float(safe_norm(x)) == pytest.approx(1e-22 * np.sqrt(1000), rel=1e-5)  # ...this does not


@pytest.mark.parametrize("scale", [1e-35, 1e-30, 1e-12, 1.0, 1e12, 1e30])
def test_matches_float64_reference_across_the_float32_range(scale):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 30, 50)) * scale
    ref = np.sqrt((x.astype(np.float64) ** 2).sum((1, 2)))
    got = np.asarray(safe_norm(jnp.asarray(x, jnp.float32), (1, 2)), np.float64)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_zero_and_nonfinite():
    assert float(safe_norm(jnp.zeros(5))) == 0.0
    assert np.isinf(safe_norm(jnp.array([1.0, jnp.inf])))
    assert np.isnan(safe_norm(jnp.array([1.0, jnp.nan])))


def test_global_norm_of_a_tree():
    tree = {"a": jnp.full((3,), 1e-25), "b": {"c": jnp.full((4,), 1e-25)}}
    assert float(global_norm(tree)) == pytest.approx(1e-25 * np.sqrt(7), rel=1e-5)
