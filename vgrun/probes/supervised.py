"""The supervised per-layer gradient trace at given parameters, outside a training step.

Gradient-free training (`vgrun.training.evolve`) never differentiates to update its parameters and
pretraining (`vgrun.training.pretrain`) differentiates another loss, but both keep the same
diagnostic as backpropagation training: at a traced step, the per-layer |delta_l|,
|dL/dW_l|, |dL/db_l| of the supervised loss at the current parameters, taken with the
zero-probe taps of `vgrun.probes.layers` (feed-forward models: mlp, resmlp).
"""

from __future__ import annotations

import jax

from vgrun.probes.layers import Trace, trace_global_norm, trace_step


def supervised_trace(model, problem, params, state, x, y, updates, batch: int):
    """Loss, accuracy, Trace (fields [depth + 1]) and the global gradient norm at `params`.

    x: [B, d_in], y: [B] labels or [B, d_out]; `updates` (a params-shaped tree) is what
    the caller's step changed, for the update ratio. The gradient is only measured.
    """

    def loss_fn(p, probes):
        y_pred, _, measured = model.apply(p, state, x, probes, train=True, stats=True)
        loss, acc = problem.loss_and_acc(y_pred, y)
        return loss, (acc, measured)

    (loss, (acc, measured)), (grads, probe_grads) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
        params, model.probes()
    )
    trace = trace_step(grads, probe_grads, params, updates, measured, batch)
    return loss, acc, trace, trace_global_norm(grads, trace)


__all__ = ["Trace", "supervised_trace"]
