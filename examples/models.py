"""Networks of one's own, for `vgrun model=custom model.target=examples.models:NAME` (run from the
repository's root) or for `vgrun.traced_value_and_grad` in a script. Each is FACTORY(n_in, n_out, key)."""

import jax
import jax.numpy as jnp

import vgrun


def tanh_mlp(n_in, n_out, key, depth=8, width=32, gain=1.0, act=jnp.tanh):
    """A plain JAX (init, apply) pair: a tanh (or `act`) MLP, every hidden pre-activation tapped."""

    def init(key):
        sizes = [n_in] + [width] * depth + [n_out]
        keys = jax.random.split(key, len(sizes) - 1)
        return [{"w": gain * jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros(b)}
                for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def apply(params, x):
        h = x
        for p in params[:-1]:
            h = act(vgrun.tap("z", h @ p["w"] + p["b"]))
        return h @ params[-1]["w"] + params[-1]["b"]

    return init, apply


def sigmoid_mlp(n_in, n_out, key):
    """The textbook vanishing case, written by hand: 10 sigmoid layers."""
    return tanh_mlp(n_in, n_out, key, depth=10, act=jax.nn.sigmoid)


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


def eqx_mlp(n_in, n_out, key, depth=8, width=32):
    """An Equinox module (pip install equinox): tanh layers applied per example (vmapped), each
    layer's output tapped on the whole batch. Equinox's default weights, U(-1/sqrt(n), 1/sqrt(n)),
    have a third of the variance tanh needs: the gradient falls ~0.57x a layer (0.02 over 7 layers
    at step 0) and `vgrun model=custom model.target=examples.models:eqx_mlp` does not learn in 300 steps."""
    import equinox as eqx

    class MLP(eqx.Module):
        layers: list
        out: eqx.nn.Linear

        def __init__(self, key):
            keys = jax.random.split(key, depth + 1)
            sizes = [n_in] + [width] * depth
            self.layers = [eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys)]
            self.out = eqx.nn.Linear(width, n_out, key=keys[-1])

        def __call__(self, x):  # [B, n_in]
            for layer in self.layers:
                x = vgrun.tap("h", jnp.tanh(jax.vmap(layer)(x)))
            return jax.vmap(self.out)(x)

    return MLP(key)
