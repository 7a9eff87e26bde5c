"""Config -> optax chain: value clipping, global-norm clipping, then the optimizer."""

from __future__ import annotations

import optax


def _shape(ocfg, steps: int):
    """The schedule's shape, from 1 at its peak (lr is applied on top: it may be traced)."""
    if ocfg.schedule == "cosine":
        return optax.cosine_decay_schedule(1.0, steps)
    if ocfg.schedule == "exponential":
        return optax.exponential_decay(1.0, transition_steps=steps, decay_rate=ocfg.decay_rate)
    if ocfg.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, ocfg.warmup_steps, steps)
    return None


def schedule(ocfg, steps: int):
    lr, shape = ocfg.lr, _shape(ocfg, steps)
    return lr if shape is None else (lambda count: lr * shape(count))


def _optimizer(ocfg, lr):
    name = ocfg.name
    if name == "sgd":
        return optax.sgd(lr)
    if name == "momentum":
        return optax.sgd(lr, momentum=ocfg.momentum)
    if name == "adam":
        return optax.adam(lr, b1=ocfg.b1, b2=ocfg.b2, eps=ocfg.eps)
    if name == "rmsprop":
        return optax.rmsprop(lr, decay=ocfg.decay, eps=ocfg.eps)
    if name == "rprop":  # sign-based: lr is the initial step size
        return optax.rprop(lr, eta_minus=ocfg.eta_minus, eta_plus=ocfg.eta_plus)
    raise KeyError(name)


def scales_gradient(ocfg) -> bool:
    """Is every update the gradient times one scalar, the same for all parameters at a step?

    Plain SGD is, under any schedule and with or without clipping by global norm: the update
    is -lr_t * min(1, clip / |g|) * g. Then |update_l| = c * |dL/dW_l|, and the traces take
    it from the gradient norms instead of a pass over every update (vgrun.training.loop). Momentum,
    adaptive steps and clipping by value are not."""
    return ocfg.name == "sgd" and ocfg.clip_value is None


def make(ocfg, steps: int) -> optax.GradientTransformation:
    chain = []
    if ocfg.clip_value is not None:
        chain.append(optax.clip(ocfg.clip_value))
    if ocfg.clip_norm is not None:  # last clip, so the global-norm bound holds exactly
        chain.append(optax.clip_by_global_norm(ocfg.clip_norm))
    chain.append(_optimizer(ocfg, schedule(ocfg, steps)))
    return optax.chain(*chain)
