"""Per-layer traces of a real training step against central finite differences (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vgrun import nn as models
from vgrun.nn import mlp  # noqa: F401  (models.mlp)
from vgrun.nn.activations import ACTIVATIONS
from vgrun.config.schema import Config, InitConfig, OptimizerConfig
from vgrun.data.datasets import Dataset
from vgrun.data.problem import from_data
from vgrun.training.program import make_train



@pytest.fixture(autouse=True)
def _float64():
    """float64 in this module's tests only (tests/conftest.py restores the flag after each test)."""
    jax.config.update("jax_enable_x64", True)
EPS = 1e-6


def tiny_problem(act: str, model: str = "mlp"):
    cfg = Config(depth=4, width=5, act=act, batch_size=3, steps=1, dtype="float64", chunks=1,
                 init=InitConfig(name="normal", sigma_w=1.6, sigma_b=0.3))
    cfg.model.name = model
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3))
    y = rng.integers(0, 2, 7).astype(np.int32)
    return cfg, Dataset(x, y, x, y, 2, True)


def first_step(cfg, data):
    """The traced step-0 record, and the batch and parameters it was taken at."""
    prog = make_train(cfg, from_data(data, jnp.float64))
    d = prog.problem.arrays
    carry = prog.init(jax.random.PRNGKey(0))
    idx = jax.random.randint(jax.random.fold_in(carry.key, 0), (cfg.batch_size,), 0, len(data.x_train))
    _, (_, trace) = prog.chunk(jax.tree_util.tree_map(jnp.copy, carry), d)  # chunk donates its carry
    return jax.tree_util.tree_map(lambda a: np.asarray(a[0]), trace), carry, d["x"][idx], d["y"][idx]


def example_losses(model, params, state, x, y, probes):
    y_pred, _, _ = model.apply(params, state, x, probes, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(y_pred, y)  # [B]


def reference_losses(cfg, params, x, y, dz, dh=None):
    """An independent forward pass with perturbations dz[l] [B, width] added to the
    pre-activation of layer l (dz[depth]: to the logits) and dh[l] to the output h_l of hidden
    layer l (a residual network's stream); per-example losses [B]."""
    phi = ACTIVATIONS[cfg.act].fn
    residual = cfg.model.name == "resmlp"
    dh = dh if dh is not None else [0.0] * cfg.depth
    h = phi(x @ params["inp"]["w"] + params["inp"]["b"] + dz[0]) + dh[0]
    for l in range(cfg.depth - 1):
        a = phi(h @ params["hid"]["w"][l] + params["hid"]["b"][l] + dz[l + 1])
        h = (h + cfg.model.res_scale * a if residual else a) + dh[l + 1]
    logits = h @ params["out"]["w"] + params["out"]["b"] + dz[cfg.depth]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def rms_fd(f, zero, B):
    """RMS over the batch of ||d loss_i / d v_l,i|| by central differences, for each list entry l
    (f: per-example losses of the list of perturbations)."""
    out = []
    for l in range(len(zero)):
        @jax.jit  # every central difference of entry l in one program
        def central(index, l=l):
            def one(k):
                i, j = jnp.unravel_index(k, zero[l].shape)
                e = zero[l].at[i, j].set(EPS)
                plus, minus = list(zero), list(zero)
                plus[l], minus[l] = e, -e
                return (f(plus)[i] - f(minus)[i]) / (2 * EPS)
            return jax.vmap(one)(index)

        out.append(np.sqrt(np.sum(np.asarray(central(jnp.arange(zero[l].size))) ** 2) / B))
    return np.array(out)


@pytest.mark.parametrize("act,model", [("tanh", "mlp"), pytest.param("sigmoid", "mlp", marks=pytest.mark.long),
                                       ("gcu", "resmlp")])
def test_delta_is_rms_of_per_example_dL_dz(act, model):
    cfg, data = tiny_problem(act, model)
    trace, carry, x, y = first_step(cfg, data)
    B, L, W = cfg.batch_size, cfg.depth, cfg.width
    zero = [jnp.zeros((B, W)) for _ in range(L)] + [jnp.zeros((B, 2))]
    f = lambda dz: reference_losses(cfg, carry.params, x, y, dz)  # noqa: E731
    np.testing.assert_allclose(f(zero), example_losses(
        models.mlp.make(cfg, 3, 2, jnp.float64, cfg.diagnosis.sat_tol), carry.params, carry.state, x, y, None), rtol=1e-12)
    np.testing.assert_allclose(trace.delta, rms_fd(f, zero, B), rtol=1e-6)
    if model == "resmlp":  # the residual stream at each block's output, h_0 .. h_{depth-1}
        dz0 = [jnp.zeros((B, W)) for _ in range(L)] + [jnp.zeros((B, 2))]
        g = lambda dh: reference_losses(cfg, carry.params, x, y, dz0, dh)  # noqa: E731
        np.testing.assert_allclose(trace.stream[:L], rms_fd(g, [jnp.zeros((B, W)) for _ in range(L)], B), rtol=1e-6)
        assert np.isnan(trace.stream[L])  # the output layer is no block
    else:
        assert np.isnan(trace.stream).all()  # no stream without skip connections


@pytest.mark.long  # eleven finite-difference programs; run by .ci/run after the fast suite
def test_he2016_block_delta_and_stream_against_finite_differences():
    """model.block=two: a = phi(h W1 + b1), h' = phi(h + alpha (a W2 + b2)); delta at every layer and
    the stream at each block's input and output, against central differences of an independent pass."""
    cfg, data = tiny_problem("tanh", "resmlp")
    cfg.depth, cfg.model.block, cfg.model.res_scale = 5, "two", 0.7
    trace, carry, x, y = first_step(cfg, data)
    B, L, W = cfg.batch_size, cfg.depth, cfg.width
    params, phi = carry.params, ACTIVATIONS[cfg.act].fn

    def losses(dz, dh):
        h = phi(x @ params["inp"]["w"] + params["inp"]["b"] + dz[0]) + dh[0]
        for first in range(1, L, 2):
            h = h + dh[first]  # the first layer's stream: the block's input
            a = phi(h @ params["hid"]["w"][first - 1] + params["hid"]["b"][first - 1] + dz[first])
            z = a @ params["hid"]["w"][first] + params["hid"]["b"][first] + dz[first + 1]
            h = phi(h + cfg.model.res_scale * z) + dh[first + 1]
        logits = h @ params["out"]["w"] + params["out"]["b"] + dz[L]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    zero_z = [jnp.zeros((B, W)) for _ in range(L)] + [jnp.zeros((B, 2))]
    zero_h = [jnp.zeros((B, W)) for _ in range(L)]
    net = models.mlp.make(cfg, 3, 2, jnp.float64, cfg.diagnosis.sat_tol)
    np.testing.assert_allclose(losses(zero_z, zero_h), example_losses(net, params, carry.state, x, y, None),
                               rtol=1e-12)
    np.testing.assert_allclose(trace.delta, rms_fd(lambda dz: losses(dz, zero_h), zero_z, B), rtol=1e-6)
    np.testing.assert_allclose(trace.stream[:L], rms_fd(lambda dh: losses(zero_z, dh), zero_h, B), rtol=1e-6)


@pytest.mark.parametrize("act", [pytest.param("tanh", marks=pytest.mark.long), "relu"])  # tanh: with -m long
@pytest.mark.parametrize("depth", [4, 22])  # unrolled stack (norms taken afterwards), rolled (weights tapped)
def test_weight_and_bias_gradient_norms(act, depth):
    cfg, data = tiny_problem(act)
    cfg.depth = depth
    trace, carry, x, y = first_step(cfg, data)
    net = models.mlp.make(cfg, 3, 2, jnp.float64, cfg.diagnosis.sat_tol)
    loss = lambda p: example_losses(net, p, carry.state, x, y, None).mean()  # noqa: E731
    flat, unravel = jax.flatten_util.ravel_pytree(carry.params)

    @jax.jit  # every parameter's central difference in one program
    def central(index):
        one = lambda k: (loss(unravel(flat.at[k].add(EPS))) - loss(unravel(flat.at[k].add(-EPS)))) / (2 * EPS)  # noqa: E731
        return jax.vmap(one)(index)

    fd = np.asarray(central(jnp.arange(flat.size)))
    g = unravel(jnp.asarray(fd))
    norm = lambda a, axes=None: np.sqrt((np.asarray(a) ** 2).sum(axes))  # noqa: E731
    for name, field in (("w", trace.grad_w), ("b", trace.grad_b)):
        expected = np.concatenate([[norm(g["inp"][name])], norm(g["hid"][name], tuple(range(1, g["hid"][name].ndim))),
                                   [norm(g["out"][name])]])
        # central differences through 22 layers carry ~2e-6 of truncation error themselves
        np.testing.assert_allclose(field, expected, rtol=1e-6 if depth < 10 else 1e-5)
    w = carry.params
    np.testing.assert_allclose(trace.weight[0], norm(w["inp"]["w"]), rtol=1e-12)
    assert ("w" in net.probes()["out"]) == (depth > models.mlp.FULL_UNROLL_DEPTH)
    # plain sgd: the update is -lr * grad
    np.testing.assert_allclose(trace.update_ratio, cfg.optimizer.lr * trace.grad_w / trace.weight, rtol=1e-6)


def test_activation_statistics():
    cfg, data = tiny_problem("tanh")
    trace, carry, x, y = first_step(cfg, data)
    p, h = carry.params, np.asarray(x)
    for l in range(cfg.depth):
        layer = p["inp"] if l == 0 else jax.tree_util.tree_map(lambda a: a[l - 1], p["hid"])
        z = h @ np.asarray(layer["w"]) + np.asarray(layer["b"])
        h = np.tanh(z)
        assert trace.act_mean[l] == pytest.approx(h.mean(), rel=1e-9)
        assert trace.act_std[l] == pytest.approx(h.std(), rel=1e-6)
        saturated = (1 - np.tanh(z) ** 2 < cfg.diagnosis.sat_tol).all(0).mean()
        assert trace.saturated[l] == saturated


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_update_ratio_is_the_parameter_change_over_the_weight(optimizer):
    """|W_l(t+1) - W_l(t)| / |W_l(t)| against the parameters before and after the step."""
    cfg, data = tiny_problem("tanh")
    cfg.optimizer = OptimizerConfig(name=optimizer, lr=0.1)
    prog = make_train(cfg, from_data(data, jnp.float64))
    carry = prog.init(jax.random.PRNGKey(0))
    before = jax.tree_util.tree_map(np.asarray, carry.params)
    after, (_, trace) = prog.chunk(jax.tree_util.tree_map(jnp.copy, carry), prog.problem.arrays)
    w0, w1 = before, jax.tree_util.tree_map(np.asarray, after.params)
    change = [np.linalg.norm(w1["inp"]["w"] - w0["inp"]["w"]) / np.linalg.norm(w0["inp"]["w"])]
    change += [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(w1["hid"]["w"], w0["hid"]["w"])]
    change += [np.linalg.norm(w1["out"]["w"] - w0["out"]["w"]) / np.linalg.norm(w0["out"]["w"])]
    np.testing.assert_allclose(np.asarray(trace.update_ratio[0]), change, rtol=1e-9)


@pytest.mark.parametrize("model", ["mlp", "resmlp"])
def test_histograms_count_the_weights_their_gradients_and_each_example_s_delta(model):
    """Program.histogram at step 0 against numpy's histograms of the parameters, of dL/dW (JAX's
    gradient of the independent reference pass), and of every example's own dL_i/dz_l (the
    gradient of the summed reference losses with respect to dz)."""
    from vgrun.probes import histograms as h

    cfg, data = tiny_problem("tanh", model)
    cfg.histograms = True
    prog = make_train(cfg, from_data(data, jnp.float64))
    d = prog.problem.arrays
    carry = prog.init(jax.random.PRNGKey(0))
    idx = jax.random.randint(jax.random.fold_in(carry.key, 0), (cfg.batch_size,), 0, len(data.x_train))
    x, y = d["x"][idx], d["y"][idx]
    got = jax.device_get(prog.histogram(carry, d))

    def reference(v):
        v = np.asarray(v, np.float64).ravel()
        counts, _ = np.histogram(np.log10(np.abs(v[v != 0])), bins=h.edges())
        return np.concatenate([counts, [np.sum(v == 0), 0]])

    p = carry.params
    layers = lambda t: [t["inp"]["w"], *t["hid"]["w"], t["out"]["w"]]  # noqa: E731
    zero = [jnp.zeros((cfg.batch_size, cfg.width)) for _ in range(cfg.depth)] + [jnp.zeros((cfg.batch_size, 2))]
    dz = jax.grad(lambda dz: reference_losses(cfg, p, x, y, dz).sum())(zero)  # row i: example i's dL_i/dz
    dw = jax.grad(lambda q: reference_losses(cfg, q, x, y, zero).mean())(p)
    for q, want in (("weight", layers(p)), ("grad_w", layers(dw)), ("delta", dz)):
        assert got[q].shape == (cfg.depth + 1, h.N_COUNTS)
        for layer, v in enumerate(want):
            np.testing.assert_array_equal(got[q][layer], reference(v), err_msg=f"{q} layer {layer}")
