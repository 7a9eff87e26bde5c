"""A small transformer encoder in Flax NNX, Post-LN against Pre-LN (Xiong et al. 2020), for the sequence tasks.

    vgrun model=custom model.target=vgrun.zoo.transformer:post_ln6 data=temporal_order seq_len=20

A batch x [B, T, features] is projected to d_model per step, sinusoidal positions are added
(Vaswani et al. 2017, sec. 3.5: no parameters to learn, so both variants start from the same
stream), then L layers of multi-head self-attention and a ReLU feed-forward network, each a
residual sub-layer whose layer normalization sits
- after the addition in Post-LN (the original Transformer): x = LN(x + Sublayer(x));
- inside the branch in Pre-LN: x = x + Sublayer(LN(x)), with a final LN before the read-out.
The attention is not masked, so every position sees every step; the network is read out from the mean
over positions, y = W_out mean_t h_L[:, t] [B, n_out] (readout="last": from h_L[:, -1], where the tasks
ask for their answer). The mean because the paper's losses are taken at every position (a translation's
every word), so every position of the last layer gets a gradient, and a gradient spread evenly over the
positions stays so through an attention at initialization: the per-layer record then shows depth, not a
gradient concentrated at one position by the read-out and spread out again by the attention below it.

Xavier-uniform weights and zero biases everywhere (as in fairseq's Transformer; the paper's analysis
assumes Xavier initialization). The input projection is a token embedding when the features are
one-hot (temporal_order): its rows are N(0, 1), the scale of fairseq's embeddings times sqrt(d_model).
No dropout. Taps: the residual stream at each layer's output, `layer[0]` .. `layer[L-1]`.
Widths after the paper's IWSLT14 model (d_model 512, 4 heads, FFN 1024) in miniature: d_model 32,
4 heads, FFN 64.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vgrun.probes.taps import tap


def sinusoids(steps: int, d: int) -> jax.Array:
    """The sinusoidal positions [T, d]: sin on even features, cos on odd, wavelengths 2 pi .. 10000 * 2 pi."""
    pos = jnp.arange(steps)[:, None]  # [T, 1]
    freq = jnp.exp(-math.log(10000.0) * jnp.arange(0, d, 2) / d)  # [d / 2]
    angle = pos * freq  # [T, d / 2]
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], -1).reshape(steps, d)


def transformer(n_in, n_out, key, layers: int, pre_ln: bool, d_model: int = 32, heads: int = 4, d_ff: int = 64,
                readout: str = "mean"):
    """An encoder of `layers` layers on sequences n_in = (T, features): Pre-LN or Post-LN, read out from the
    mean over positions or the last one (readout="mean" | "last"). Returns a Flax NNX module mapping
    [B, T, features] -> [B, n_out]."""
    if readout not in ("mean", "last"):
        raise ValueError(f"readout={readout!r}; expected mean or last")
    from flax import nnx

    steps, features = n_in
    xavier = nnx.initializers.xavier_uniform()

    def linear(d_in, d_out, rngs):
        return nnx.Linear(d_in, d_out, kernel_init=xavier, rngs=rngs)

    class Attention(nnx.Module):
        """Multi-head self-attention [B, T, d] -> [B, T, d], unmasked."""

        def __init__(self, rngs):
            self.q, self.k, self.v = (linear(d_model, d_model, rngs) for _ in range(3))
            self.o = linear(d_model, d_model, rngs)

        def __call__(self, x):
            split = lambda h: h.reshape(*h.shape[:-1], heads, d_model // heads)  # noqa: E731  [B, T, H, d / H]
            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            scores = jnp.einsum("bthe,bshe->bhts", q, k) / math.sqrt(d_model // heads)  # [B, H, T, T]
            mixed = jnp.einsum("bhts,bshe->bthe", jax.nn.softmax(scores, -1), v)  # [B, T, H, d / H]
            return self.o(mixed.reshape(x.shape))

    class FFN(nnx.Module):
        """relu(x W1 + b1) W2 + b2 per position, [B, T, d] -> [B, T, d]; W2 is the paper's W^{2,l}."""

        def __init__(self, rngs):
            self.w1, self.w2 = linear(d_model, d_ff, rngs), linear(d_ff, d_model, rngs)

        def __call__(self, x):
            return self.w2(nnx.relu(self.w1(x)))

    class Layer(nnx.Module):
        def __init__(self, rngs):
            self.attn, self.ffn = Attention(rngs), FFN(rngs)
            self.ln1, self.ln2 = nnx.LayerNorm(d_model, rngs=rngs), nnx.LayerNorm(d_model, rngs=rngs)

        def __call__(self, x):
            if pre_ln:
                x = x + self.attn(self.ln1(x))
                x = x + self.ffn(self.ln2(x))
            else:
                x = self.ln1(x + self.attn(x))
                x = self.ln2(x + self.ffn(x))
            return tap("layer", x)  # the residual stream [B, T, d]

    class Encoder(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Linear(features, d_model, kernel_init=nnx.initializers.normal(1.0), rngs=rngs)
            self.layers = nnx.List([Layer(rngs) for _ in range(layers)])
            self.out = linear(d_model, n_out, rngs)
            # last: from one key, Post-LN and Pre-LN draw the same weights (a paired comparison)
            self.ln_final = nnx.LayerNorm(d_model, rngs=rngs) if pre_ln else None

        def __call__(self, x):
            h = self.embed(x) + sinusoids(steps, d_model).astype(x.dtype)  # [B, T, d]
            for layer in self.layers:
                h = layer(h)
            if pre_ln:
                h = self.ln_final(h)
            return self.out(jnp.mean(h, 1) if readout == "mean" else h[:, -1])  # [B, n_out]

    return Encoder(nnx.Rngs(params=key))


def post_ln(layers: int):
    """FACTORY(n_in, n_out, key) of a Post-LN encoder of `layers` layers."""
    return lambda n_in, n_out, key: transformer(n_in, n_out, key, layers, pre_ln=False)


def pre_ln(layers: int):
    """FACTORY(n_in, n_out, key) of a Pre-LN encoder of `layers` layers."""
    return lambda n_in, n_out, key: transformer(n_in, n_out, key, layers, pre_ln=True)


post_ln6, pre_ln6 = post_ln(6), pre_ln(6)  # the paper's 6-layer encoder (IWSLT14, fig. 3)
