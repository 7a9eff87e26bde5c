"""He et al. (2016)'s CIFAR networks in miniature, in Flax NNX, for the 8x8 digits as images.

    vgrun model=custom model.target=vgrun.zoo.cnn:res20 data.images=true

6n + 2 weighted layers (sec. 4.2): a 3x3 convolution, three stages of n blocks of two 3x3
convolutions each (the first block of stages 2 and 3 halving the map with stride 2: 8x8 -> 4x4 ->
2x2, here), global average pooling and a fully connected read-out. Batch norm after every
convolution, ReLU after it, and in a residual block after the addition:
relu(bn(conv(relu(bn(conv(x))))) + x). Where the map halves, the shortcut is the paper's option A
(parameter-free: the input subsampled, its channels padded with zeros). He initialization, no
biases in the convolutions (batch norm's shift replaces them). Taps: the first convolution's
output ("stem") and every block's output ("block"), the residual stream in a residual network.
Widths (16, 32, 64) as the paper's unless `widths` says otherwise.
"""

from __future__ import annotations

import jax.numpy as jnp

from vgrun.probes.taps import tap


def resnet(n_in, n_out, key, blocks: int, residual: bool, widths=(16, 32, 64), momentum: float = 0.9):
    """A 6 * blocks + 2 layer network on images n_in = (H, W, C): residual, or plain (the same without
    the additions). Returns a Flax NNX module mapping [B, H, W, C] -> [B, n_out]."""
    from flax import nnx

    he = nnx.initializers.he_normal()

    class Block(nnx.Module):
        def __init__(self, c_in, c_out, stride, rngs):
            self.conv1 = nnx.Conv(c_in, c_out, (3, 3), strides=stride, use_bias=False, kernel_init=he, rngs=rngs)
            self.bn1 = nnx.BatchNorm(c_out, momentum=momentum, rngs=rngs)
            self.conv2 = nnx.Conv(c_out, c_out, (3, 3), use_bias=False, kernel_init=he, rngs=rngs)
            self.bn2 = nnx.BatchNorm(c_out, momentum=momentum, rngs=rngs)
            self.stride, self.pad = stride, c_out - c_in

        def __call__(self, x):
            y = self.bn2(self.conv2(nnx.relu(self.bn1(self.conv1(x)))))
            if residual:
                skip = x[:, :: self.stride, :: self.stride, :]  # option A: subsample, pad the new channels
                y = y + jnp.pad(skip, ((0, 0), (0, 0), (0, 0), (0, self.pad)))
            return tap("block", nnx.relu(y))

    class ResNet(nnx.Module):
        def __init__(self, rngs):
            self.stem = nnx.Conv(n_in[-1], widths[0], (3, 3), use_bias=False, kernel_init=he, rngs=rngs)
            self.bn = nnx.BatchNorm(widths[0], momentum=momentum, rngs=rngs)
            layers, c_in = [], widths[0]
            for stage, c_out in enumerate(widths):
                for b in range(blocks):
                    layers.append(Block(c_in, c_out, 2 if stage > 0 and b == 0 else 1, rngs))
                    c_in = c_out
            self.blocks = nnx.List(layers)
            self.out = nnx.Linear(widths[-1], n_out, kernel_init=he, rngs=rngs)

        def __call__(self, x):
            h = tap("stem", nnx.relu(self.bn(self.stem(x))))
            for block in self.blocks:
                h = block(h)
            return self.out(jnp.mean(h, axis=(1, 2)))  # global average pooling

    return ResNet(nnx.Rngs(params=key))


def plain20(n_in, n_out, key):
    return resnet(n_in, n_out, key, 3, residual=False)


def res20(n_in, n_out, key):
    return resnet(n_in, n_out, key, 3, residual=True)


def plain56(n_in, n_out, key):
    return resnet(n_in, n_out, key, 9, residual=False)


def res56(n_in, n_out, key):
    return resnet(n_in, n_out, key, 9, residual=True)
