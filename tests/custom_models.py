"""Factories for model=custom in the tests (model.target=custom_models:NAME, with tests/ on sys.path)."""

import jax
import jax.numpy as jnp

import vgrun


def sigmoid_pair(n_in, n_out, key, depth=8, width=16):
    """An (init, apply) pair: sigmoid layers, each pre-activation tapped."""

    def init(key):
        sizes = [n_in] + [width] * depth + [n_out]
        keys = jax.random.split(key, len(sizes) - 1)
        return [{"w": jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros(b)}
                for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def apply(params, x):
        h = x
        for p in params[:-1]:
            h = jax.nn.sigmoid(vgrun.tap("z", h @ p["w"] + p["b"]))
        return h @ params[-1]["w"] + params[-1]["b"]

    return init, apply


def nnx_batchnorm(n_in, n_out, key):
    """A Flax NNX module with batch statistics: Linear-BatchNorm-ReLU twice."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.a, self.b = nnx.Linear(n_in, 16, rngs=rngs), nnx.Linear(16, 16, rngs=rngs)
            self.na, self.nb = nnx.BatchNorm(16, rngs=rngs), nnx.BatchNorm(16, rngs=rngs)
            self.out = nnx.Linear(16, n_out, rngs=rngs)

        def __call__(self, x):
            x = vgrun.tap("a", nnx.relu(self.na(self.a(x))))
            return self.out(vgrun.tap("b", nnx.relu(self.nb(self.b(x)))))

    return Net(nnx.Rngs(params=key))


def wrong_shape(n_in, n_out, key):
    return (lambda k: {"w": jnp.zeros((n_in, 3))}), (lambda p, x: x @ p["w"])


def two_args(n_in, n_out):
    return None


def not_a_network(n_in, n_out, key):
    return 42


def blobs():
    """Two Gaussian blobs in 5-D, 225 training and 75 held-out examples, integer labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.arange(300) % 2
    x = rng.standard_normal((300, 5)) + 2.0 * y[:, None]
    return x[:225], y[:225], x[225:], y[225:]


def eqx_conv(n_in, n_out, key):
    """An Equinox module on images [B, H, W, C]: a 3x3 convolution (per example, vmapped), tapped on the
    batch, then a linear read-out."""
    import equinox as eqx

    h, w, c = n_in

    class Net(eqx.Module):
        conv: eqx.nn.Conv2d
        out: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.conv = eqx.nn.Conv2d(c, 4, 3, padding=1, key=k1)
            self.out = eqx.nn.Linear(h * w * 4, n_out, key=k2)

        def __call__(self, x):  # [B, H, W, C]
            z = jax.vmap(self.conv)(jnp.moveaxis(x, -1, 1))  # [B, 4, H, W]
            z = vgrun.tap("conv", jnp.tanh(z))
            return jax.vmap(self.out)(z.reshape(len(x), -1))

    return Net(key)


def conv_pair(n_in, n_out, key):
    """An (init, apply) pair on images [B, H, W, C]: one 3x3 convolution, tapped, then a linear read-out."""
    h, w, c = n_in

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"conv": jax.random.normal(k1, (3, 3, c, 4)) / 3.0, "out": jax.random.normal(k2, (h * w * 4, n_out)) / 16}

    def apply(params, x):
        z = jax.lax.conv_general_dilated(x, params["conv"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        z = vgrun.tap("conv", jnp.tanh(z))
        return z.reshape(len(x), -1) @ params["out"]

    return init, apply


def flat_pair(n_in, n_out, key):
    """An (init, apply) pair on any example shape: flattened, one tanh layer tapped, a linear read-out."""
    size = int(jnp.prod(jnp.array(n_in)))

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"a": jax.random.normal(k1, (size, 32)) / jnp.sqrt(size), "b": jax.random.normal(k2, (32, n_out)) / 6}

    def apply(params, x):
        h = vgrun.tap("h", jnp.tanh(x.reshape(len(x), -1) @ params["a"]))
        return h @ params["b"]

    return init, apply


def untapped(n_in, n_out, key):
    """An (init, apply) pair without a single tap."""
    def init(key):
        return {"w": jax.random.normal(key, (n_in, n_out)) / jnp.sqrt(n_in)}

    return init, lambda p, x: jnp.tanh(x) @ p["w"]
