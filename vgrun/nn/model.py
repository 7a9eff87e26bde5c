"""The one interface of a network: what vgrun's models are, and what a user's own must be."""

from __future__ import annotations

from typing import Callable, NamedTuple


class Model(NamedTuple):
    """A network, built by `vgrun.nn.make_model(cfg, problem)`.

    init(key) -> (params, state)                      state: running statistics ({} or () when none)
    apply(params, state, x, probes=None, train=True, stats=False) -> (y, state, measured)
        x [B, n_in] (sequences: [B, T, n_in]) -> y [B, n_out] (several read-out steps: [B, n_out_steps, n_out]);
        measured: the forward pass's own measurements by name, {} unless `stats`:
        feed-forward act_mean, act_std, saturated, weight [depth]; recurrent h_last [B, H]
    probes() -> zero probes (a pytree): the gradient of the loss with respect to them is the
        per-layer (per-time-step) trace, taken inside the backward pass (`vgrun.probes.tap`)
    n_layers: traced layers (feed-forward: depth hidden + 1 output; recurrent: depth)
    recurrent: whether probes are per time step
    trace: (grads, probe_grads, params, updates, measured, batch) -> Trace, for a model whose
        parameters are not vgrun's {inp, hid, out} tree (`vgrun.nn.custom`); None: vgrun's own
    names: the traced layers' names, where they have names of their own (a custom model's taps)
    stepped: trained a step per call from the host, not in a scan (a convolution: see
        vgrun.training.program.HostChunk)
    """

    init: Callable
    apply: Callable
    probes: Callable
    n_layers: int
    recurrent: bool
    trace: Callable | None = None
    names: list | None = None
    stepped: bool = False
    leaves: list | None = None  # a custom model's parameter leaves by module path ("layers/0/kernel"), pytree order
