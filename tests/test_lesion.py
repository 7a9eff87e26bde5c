"""The lesion study's deletions (vgrun.science.lesion): a deleted plain layer is the network
without that layer; keeping every layer is the network as it is."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vgrun.config.schema import Config
from vgrun.data.problem import make as make_problem
from vgrun.nn import make_model


def test_deleting_a_plain_layer_equals_the_network_without_it():
    cfg = Config(depth=4, width=8, act="tanh", norm="batchnorm")
    problem = make_problem(cfg, jnp.float32)
    model = make_model(cfg, problem)
    params, state = model.init(jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map(lambda v: v + 0.1 * jax.random.normal(jax.random.PRNGKey(1), v.shape), params)
    state = {"inp": state["inp"], "hid": (state["hid"][0] + 0.3, state["hid"][1] * 2.0)}  # running stats in use
    x = problem.arrays["x_test"][:16]
    whole, _, _ = model.apply(params, state, x, train=False)
    kept, _, _ = model.apply(params, state, x, train=False, keep=jnp.ones(3))
    np.testing.assert_array_equal(whole, kept)
    for u in range(3):
        keep = jnp.ones(3).at[u].set(0.0)
        lesioned, _, _ = model.apply(params, state, x, train=False, keep=keep)
        drop = lambda v: jnp.delete(v, u, axis=0)  # noqa: E731
        smaller = make_model(dataclasses.replace(cfg, depth=3), problem)
        p = {**params, "hid": jax.tree_util.tree_map(drop, params["hid"])}
        s = {"inp": state["inp"], "hid": jax.tree_util.tree_map(drop, state["hid"])}
        without, _, _ = smaller.apply(p, s, x, train=False)
        np.testing.assert_allclose(lesioned, without, rtol=1e-5, atol=1e-6)


def test_a_route_changes_the_backward_pass_only():
    """route (model.block=two): the forward pass is the network's whatever the route; the gradient with
    every block as built is the ordinary one; through the skips only it differs from through the branches."""
    cfg = Config(depth=5, width=8, act="relu", norm="batchnorm")
    cfg.model.name, cfg.model.block = "resmlp", "two"
    problem = make_problem(cfg, jnp.float32)
    model = make_model(cfg, problem)
    params, state = model.init(jax.random.PRNGKey(0))
    x, y = problem.arrays["x_test"][:16], problem.arrays["y_test"][:16]

    def out(route):
        return model.apply(params, state, x, train=False, route=route)[0]

    def grad_h0(route):  # d (sum of logits) / d h_0, h_0 the input layer's output, via a zero perturbation
        def f(e):
            p = {**params, "inp": {**params["inp"], "b": params["inp"]["b"] + e}}
            return model.apply(p, state, x, train=False, route=route)[0].sum()
        return jax.grad(f)(jnp.zeros(8))

    built, skips = jnp.zeros(2, jnp.int32), jnp.full(2, 2, jnp.int32)
    for r in (built, skips, jnp.ones(2, jnp.int32), jnp.array([1, 2], jnp.int32)):
        np.testing.assert_array_equal(out(r), out(None))
    np.testing.assert_allclose(grad_h0(built), grad_h0(None), rtol=1e-6)
    assert not np.allclose(grad_h0(skips), grad_h0(jnp.ones(2, jnp.int32)))
