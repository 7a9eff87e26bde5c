"""vgrun.tap and vgrun.traced_value_and_grad on plain JAX functions: numbers against vgrun's own MLP and
finite differences; under jit, vmap and lax.scan; an untraced function's jaxpr untouched."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vgrun
from vgrun.config.schema import Config, InitConfig
from vgrun.nn import make_model
from vgrun.probes.layers import trace_step
from vgrun.probes.taps import sites


@pytest.fixture
def _float64():
    jax.config.update("jax_enable_x64", True)
    yield


def mlp_apply(params, x, act=jnp.tanh):
    """vgrun's mlp written by hand, on its own params tree ({inp, hid, out}), tapping each pre-activation."""
    z = vgrun.tap("z", x @ params["inp"]["w"] + params["inp"]["b"])
    h = act(z)
    for w, b in zip(params["hid"]["w"], params["hid"]["b"]):
        h = act(vgrun.tap("z", h @ w + b))
    return vgrun.tap("out", h @ params["out"]["w"] + params["out"]["b"])


def mse(apply):
    return lambda p, x, y: jnp.mean(jnp.sum((apply(p, x) - y) ** 2, -1))


def test_the_trace_equals_vgrun_s_own_mlp_with_the_same_weights():
    cfg = Config(depth=4, width=6, act="tanh", batch_size=5, init=InitConfig(name="normal", sigma_w=1.5, sigma_b=0.2))

    class Problem:
        n_in, n_out = 3, 2

    model = make_model(cfg, Problem)
    params, state = jax.jit(model.init)(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    y = jax.random.normal(jax.random.PRNGKey(2), (5, 2))

    def own(p, probes):
        y_pred, _, measured = model.apply(p, state, x, probes, stats=True)
        return jnp.mean(jnp.sum((y_pred - y) ** 2, -1)), measured

    (loss0, measured), (grads0, probe_grads) = jax.jit(jax.value_and_grad(own, (0, 1), has_aux=True))(
        params, model.probes())
    expected = trace_step(grads0, probe_grads, params, grads0, measured, 5)

    traced = vgrun.traced_value_and_grad(mse(mlp_apply))
    loss, grads, trace = jax.jit(traced)(params, x, y)
    assert traced.taps == ["z[0]", "z[1]", "z[2]", "z[3]", "out"]
    np.testing.assert_allclose(loss, loss0, rtol=1e-6)
    np.testing.assert_allclose(trace.delta, expected.delta, rtol=1e-5)
    # vgrun's MLP keeps activation statistics of phi(z); the taps here see z, so compare on z itself
    assert np.all(np.isfinite(trace.act_std)) and np.all(trace.act_std > 0)
    for got, want in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads0)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # leaves in pytree order: inp/b, inp/w, hid/b, hid/w, out/b, out/w; grouped by module path
    assert traced.leaves == ["hid/b", "hid/w", "inp/b", "inp/w", "out/b", "out/w"]
    assert traced.layers == ["hid", "hid", "inp", "inp", "out", "out"]
    np.testing.assert_allclose(trace.grad[3], expected.grad_w[0], rtol=1e-6)  # inp/w
    np.testing.assert_allclose(trace.weight[5], expected.weight[-1], rtol=1e-6)  # out/w


def test_delta_and_activation_statistics_against_finite_differences(_float64):
    """delta at a tap: sqrt(B) |dL/dh|_F, dL/dh by central differences on h itself (float64)."""
    k = jax.random.split(jax.random.PRNGKey(3), 4)
    params = {"a": jax.random.normal(k[0], (3, 4), jnp.float64), "b": jax.random.normal(k[1], (4, 2), jnp.float64)}
    x = jax.random.normal(k[2], (7, 3), jnp.float64)
    y = jax.random.normal(k[3], (7, 2), jnp.float64)

    def head(h, p):
        return jnp.mean(jnp.sum((jnp.sin(h) @ p["b"] - y) ** 2, -1))

    def loss(p, x):
        return head(vgrun.tap("h", x @ p["a"]), p)

    _, _, trace = jax.jit(vgrun.traced_value_and_grad(loss))(params, x)
    h = np.asarray(x @ params["a"])
    head = jax.jit(head)
    eps, grad = 1e-6, np.zeros_like(h)
    for i in np.ndindex(h.shape):
        e = np.zeros_like(h)
        e[i] = eps
        grad[i] = (head(h + e, params) - head(h - e, params)) / (2 * eps)
    np.testing.assert_allclose(trace.delta[0], np.sqrt(7) * np.linalg.norm(grad), rtol=1e-7)
    np.testing.assert_allclose(trace.act_mean[0], h.mean(), rtol=1e-12)
    np.testing.assert_allclose(trace.act_std[0], h.std(), rtol=1e-12)


@pytest.mark.optimized  # a cotangent at the edge of float32's range
def test_a_vanishing_gradient_is_measured_not_flushed_to_zero():
    def loss(p, x):
        return 1e-30 * jnp.sum(vgrun.tap("h", x * p))  # dL/dh = 1e-30 in every entry

    _, _, trace = jax.jit(vgrun.traced_value_and_grad(loss))(jnp.float32(1), jnp.ones((4, 1000), jnp.float32))
    np.testing.assert_allclose(trace.delta[0], 1e-30 * np.sqrt(4) * np.sqrt(4000), rtol=1e-5)


def scanned(params, x):
    """A stack of layers scanned: the tap inside the body says its row."""
    n = params["w"].shape[0]

    def body(h, wi):
        w, i = wi
        return jnp.tanh(vgrun.tap("z", h @ w, index=i, size=n)), None

    h, _ = jax.lax.scan(body, x, (params["w"], jnp.arange(n)))
    return vgrun.tap("out", h @ params["out"])


def unrolled(params, x):
    h = x
    for w in params["w"]:
        h = jnp.tanh(vgrun.tap("z", h @ w))
    return vgrun.tap("out", h @ params["out"])


def stack_params(key, depth=5, width=4):
    k = jax.random.split(key, 2)
    return {"w": jax.random.normal(k[0], (depth, width, width)) / 2, "out": jax.random.normal(k[1], (width, 3))}


def test_a_scanned_stack_gives_one_row_per_iteration_equal_to_the_unrolled_stack():
    params = stack_params(jax.random.PRNGKey(4))
    x, y = jax.random.normal(jax.random.PRNGKey(5), (6, 4)), jnp.zeros((6, 3))
    a, b = vgrun.traced_value_and_grad(mse(scanned)), vgrun.traced_value_and_grad(mse(unrolled))
    _, _, ta = jax.jit(a)(params, x, y)
    _, _, tb = jax.jit(b)(params, x, y)
    assert a.taps == ["z[0]", "z[1]", "z[2]", "z[3]", "z[4]", "out"] == b.taps
    for f in ("delta", "act_mean", "act_std", "grad", "weight"):
        np.testing.assert_allclose(getattr(ta, f), getattr(tb, f), rtol=1e-5, err_msg=f)


def test_vmapped_over_seeds_each_member_gets_its_own_trace():
    keys = jax.random.split(jax.random.PRNGKey(6), 3)
    params = jax.vmap(stack_params)(keys)
    x, y = jax.random.normal(jax.random.PRNGKey(7), (6, 4)), jnp.zeros((6, 3))
    traced = vgrun.traced_value_and_grad(mse(scanned))
    _, _, batched = jax.jit(jax.vmap(traced, in_axes=(0, None, None)))(params, x, y)
    one_member = jax.jit(traced)
    for i in range(3):
        _, _, one = one_member(jax.tree_util.tree_map(lambda v: v[i], params), x, y)
        np.testing.assert_allclose(batched.delta[i], one.delta, rtol=1e-5)
        np.testing.assert_allclose(batched.grad[i], one.grad, rtol=1e-5)


def test_an_untraced_function_s_jaxpr_is_unchanged_by_its_taps():
    params = stack_params(jax.random.PRNGKey(8))
    x, y = jnp.ones((2, 4)), jnp.zeros((2, 3))

    def bare(params, x):
        h = x
        for w in params["w"]:
            h = jnp.tanh(h @ w)
        return h @ params["out"]

    def step(apply):
        return jax.grad(mse(apply))

    assert str(jax.make_jaxpr(step(unrolled))(params, x, y)) == str(jax.make_jaxpr(step(bare))(params, x, y))
    assert str(jax.make_jaxpr(step(scanned))(params, x, y)) != ""  # runs untraced, index and size ignored


def test_sites_are_found_in_the_order_they_run_and_bad_taps_are_named():
    params = stack_params(jax.random.PRNGKey(9), depth=2)
    assert [s.name for s in sites(scanned, params, jnp.ones((2, 4)))] == ["z", "out"]
    assert [s.size for s in sites(scanned, params, jnp.ones((2, 4)))] == [2, 1]
    with pytest.raises(TypeError, match="index= and size="):
        sites(lambda x: vgrun.tap("h", x, index=0), jnp.ones(3))


def test_a_loop_of_one_s_own_is_recorded_as_a_run_folder(tmp_path):
    """vgrun.Recorder: the diagnosis, load_run and load_table read what a plain JAX loop measured."""
    params = stack_params(jax.random.PRNGKey(10), depth=6)
    x = jax.random.normal(jax.random.PRNGKey(11), (16, 4))
    y = jax.random.normal(jax.random.PRNGKey(12), (16, 3))
    traced = vgrun.traced_value_and_grad(mse(unrolled))
    traced_step, plain_step = jax.jit(traced), jax.jit(jax.value_and_grad(mse(unrolled)))
    rec = vgrun.Recorder(tmp_path / "mine", every=5, baseline=float(jnp.mean(jnp.sum((y - y.mean(0)) ** 2, -1))))
    first = None
    for step in range(20):
        if rec.traced(step):
            loss, grads, trace = traced_step(params, x, y)
            first = trace if first is None else first
        else:
            (loss, grads), trace = plain_step(params, x, y), None
        rec.log(step, loss, trace)
        params = jax.tree_util.tree_map(lambda p, g: p - 0.05 * g, params, grads)
    summary = rec.close(test=(float(loss), float("nan")), names=traced)
    assert summary["layers"] == ["z[0]", "z[1]", "z[2]", "z[3]", "z[4]", "z[5]", "out"]
    d = summary["diagnosis"]
    assert d["ratio_first_last_init"] == pytest.approx(float(first.delta[0] / first.delta[5]), rel=1e-6)
    assert d["verdict"] in ("vanishing", "healthy", "exploding", "not learning")
    frame = vgrun.load_run(tmp_path / "mine")
    assert len(frame) == 4 * 7 and frame["delta"].iloc[0] == pytest.approx(float(first.delta[0]))
    assert set(vgrun.load_run(tmp_path / "mine", "leaves")["leaf"]) == {"out", "w"}
    assert vgrun.load_table([str(tmp_path / "mine")])["verdict"][0] == d["verdict"]
    with pytest.raises(ValueError, match="expected step 20"):
        rec.log(21, 0.0)
