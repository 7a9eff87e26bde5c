import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vgrun.probes.layers import cond_all, global_norm, safe_norm

pytestmark = pytest.mark.optimized  # norms across float32's whole range


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


@pytest.mark.parametrize("scale", [1e-35, 1e-20, 1e-13, 1e-12, 1.0, 1e18, 1e30])
def test_vmapped_members_each_get_their_own_exact_norm(scale):
    # one member in the plain sum's exact range, one outside it: the cond is taken for all at once
    rng = np.random.default_rng(1)
    x = np.stack([rng.standard_normal((3, 40, 50)) * scale, rng.standard_normal((3, 40, 50))])
    ref = np.sqrt((x.astype(np.float64) ** 2).sum((2, 3)))
    xs = jnp.asarray(x, jnp.float32)
    for got in (jax.vmap(lambda v: safe_norm(v, (1, 2)))(xs), jax.jit(jax.vmap(jax.vmap(safe_norm)))(xs)):
        np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=1e-5)
    for n in (2, 5000):  # below and above traces.SMALL (the one-pass attempt)
        rows = np.zeros((4, n), np.float32)
        rows[:, :2] = [[1.0, np.inf], [1.0, np.nan], [3.0, 4.0], [0.0, 0.0]]
        for got in (jax.vmap(safe_norm)(jnp.asarray(rows)), safe_norm(jnp.asarray(rows), 1)):
            assert np.isinf(got[0]) and np.isnan(got[1]) and list(np.asarray(got[2:])) == [5.0, 0.0]


def test_cond_all_stays_one_cond_under_vmap():
    """Each member alone takes its own branch; vmapped, all take the general branch unless
    every member's predicate holds, through one cond (no select that runs both branches)."""
    fast = lambda x, k: x * k  # noqa: E731  (right only where x > 0: the "fast path")
    general = lambda x, k: jnp.abs(x) * k  # noqa: E731
    f = lambda x, k: cond_all(x > 0, fast, general, x, k)  # noqa: E731
    assert float(f(jnp.float32(-2.0), 3.0)) == 6.0 and float(f(jnp.float32(2.0), 3.0)) == 6.0
    batched = jax.vmap(f, in_axes=(0, None))
    np.testing.assert_array_equal(batched(jnp.array([2.0, -2.0]), 3.0), [6.0, 6.0])
    np.testing.assert_array_equal(jax.jit(jax.vmap(batched, in_axes=(0, None)))(jnp.array([[1.0, 2.0]]), 3.0), [[3.0, 6.0]])
    jaxpr = str(jax.make_jaxpr(batched)(jnp.array([2.0, -2.0]), 3.0))
    assert "cond[" in jaxpr and "select_n" not in jaxpr


def test_norm_derivative():
    x = jnp.array([[3.0, 4.0], [1e-30, 0.0]])
    np.testing.assert_allclose(jax.grad(lambda v: safe_norm(v))(x), np.asarray(x) / 5.0, rtol=1e-6)
    np.testing.assert_allclose(jax.jacfwd(lambda v: safe_norm(v, 1))(x)[1, 1], [1.0, 0.0])


def test_float64_range():
    jax.config.update("jax_enable_x64", True)  # restored by conftest
    x = np.random.default_rng(2).standard_normal((30, 50))
    for scale in (1e-300, 1e-160, 1.0, 1e160):
        ref = np.sqrt(np.sum(x**2)) * scale
        assert float(safe_norm(jnp.asarray(x * scale, jnp.float64))) == pytest.approx(ref, rel=1e-12)
