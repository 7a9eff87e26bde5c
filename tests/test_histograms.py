"""Log-magnitude histograms on the device against numpy, and the histogram of a gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrun.probes import histograms as h

pytestmark = pytest.mark.optimized  # magnitudes across float32's whole range


def reference(x) -> np.ndarray:
    """numpy's histogram of log10 |x| (float64) in the same bins, then zeros, then non-finite."""
    x = np.asarray(x, np.float64).ravel()
    finite = np.isfinite(x)
    nonzero = finite & (x != 0)
    counts, _ = np.histogram(np.log10(np.abs(x[nonzero])), bins=h.edges())
    return np.concatenate([counts, [np.sum(finite & (x == 0)), np.sum(~finite)]])


def test_counts_match_numpy_across_float32_range():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(5000) * 10.0 ** rng.uniform(-35, 37, 5000)).astype(np.float32)
    x[:7] = 0.0
    x[7:10] = [np.inf, -np.inf, np.nan]
    got = np.asarray(h.log_histogram(jnp.asarray(x)))
    want = reference(x)
    # float32's log10 may put a value within ~1e-6 decades of an edge into the neighbouring bin
    assert got.sum() == x.size and got[h.ZEROS] == 7 and got[h.NONFINITE] == 3
    assert np.abs(got - want).sum() <= 2 * 0.001 * x.size


def test_exact_on_values_away_from_the_edges():
    x = np.array([1.5e-30, 2e-30, 3e-3, 5e-3, 0.7, 3e20, -4e20, 0.0], np.float32)
    got = np.asarray(h.log_histogram(jnp.asarray(x)))
    np.testing.assert_array_equal(got, reference(x))


def test_float64_values_far_below_float32_land_in_their_bins():
    with jax.enable_x64(True):
        x = jnp.asarray([3e-300, 3e-300, 2e250, 0.0], jnp.float64)
        got = np.asarray(h.log_histogram(x))
    np.testing.assert_array_equal(got, reference(np.asarray(x)))
    assert got[int(np.floor((np.log10(3e-300) - h.LOW) * h.PER_DECADE))] == 2


def test_the_tap_is_the_identity_and_its_probe_gradient_is_the_histogram_of_the_cotangent():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 6)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(2).standard_normal((6,)) * 1e-20, jnp.float32)

    def loss(x, p):
        return jnp.sum(h.hist_tap(x, p) * w)  # cotangent of x: w broadcast over the rows

    value, (gx, gp) = jax.value_and_grad(loss, (0, 1))(x, h.probe())
    assert value == pytest.approx(float(jnp.sum(x * w)), rel=1e-6)
    np.testing.assert_array_equal(gx, jnp.broadcast_to(w, x.shape))
    np.testing.assert_array_equal(gp, reference(np.broadcast_to(np.asarray(w), x.shape)))


def test_under_jit_vmap_and_scan_each_member_and_layer_gets_its_own():
    scale = jnp.asarray([1e-10, 1.0, 1e10])[:, None, None, None]  # members far apart in magnitude
    xs = jnp.asarray(np.random.default_rng(3).standard_normal((3, 2, 4, 5)), jnp.float32) * scale  # [member, layer, ...]

    def per_layer(stack):  # a scan over layers; each layer's cotangent is 2 x
        def loss(probes):
            def step(c, xp):
                x, p = xp
                return c + jnp.sum(h.hist_tap(x, p) ** 2), None
            return jax.lax.scan(step, 0.0, (stack, probes))[0]
        return jax.grad(loss)(jnp.zeros((stack.shape[0], h.N_COUNTS)))

    got = np.asarray(jax.jit(jax.vmap(per_layer))(xs))  # [member, layer, counts]
    for m in range(3):
        for layer in range(2):
            np.testing.assert_array_equal(got[m, layer], reference(2 * np.asarray(xs[m, layer])))
