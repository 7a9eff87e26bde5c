"""Networks of one's own, for `vgrun model=custom model.target=examples.models:NAME` (run from the
repository's root) or for `vgrun.traced_value_and_grad` in a script. Each is FACTORY(n_in, n_out, key)."""

import jax
import jax.numpy as jnp

import vgrun


def tanh_mlp(n_in, n_out, key, depth=8, width=32, gain=1.0):
    """A plain JAX (init, apply) pair: a tanh MLP, every hidden pre-activation tapped."""

    def init(key):
        sizes = [n_in] + [width] * depth + [n_out]
        keys = jax.random.split(key, len(sizes) - 1)
        return [{"w": gain * jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros(b)}
                for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def apply(params, x):
        h = x
        for i, p in enumerate(params[:-1]):
            h = jnp.tanh(vgrun.tap("z", h @ p["w"] + p["b"]))
        return h @ params[-1]["w"] + params[-1]["b"]

    return init, apply


def sigmoid_mlp(n_in, n_out, key):
    """The textbook vanishing case, written by hand: 10 sigmoid layers."""
    init, apply = tanh_mlp(n_in, n_out, key, depth=10)

    def sigmoid_apply(params, x):
        h = x
        for p in params[:-1]:
            h = jax.nn.sigmoid(vgrun.tap("z", h @ p["w"] + p["b"]))
        return h @ params[-1]["w"] + params[-1]["b"]

    return init, sigmoid_apply


def nnx_mlp(n_in, n_out, key, depth=6, width=32):
    """A Flax NNX module with batch norm: Linear-BatchNorm-ReLU blocks, each block's output tapped."""
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            sizes = [n_in] + [width] * depth
            self.linears = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
            self.norms = nnx.List([nnx.BatchNorm(width, rngs=rngs) for _ in range(depth)])
            self.out = nnx.Linear(width, n_out, rngs=rngs)

        def __call__(self, x):
            for linear, norm in zip(self.linears, self.norms):
                x = vgrun.tap("block", nnx.relu(norm(linear(x))))
            return self.out(x)

    return MLP(nnx.Rngs(params=key))
