"""Networks by name, each built by one signature: `make_model(cfg, problem) -> Model`."""

from __future__ import annotations

from vgrun.config.names import RECURRENT
from vgrun.nn.model import Model

SAT_TOL = 0.1  # the default of diagnosis.sat_tol (vgrun.config.schema)


def make_model(cfg, problem, sat_tol: float = SAT_TOL) -> Model:
    """The network of `cfg` (model, depth, width, act, init, norm) for `problem`'s input and output
    sizes, in cfg.dtype. sat_tol: a unit counts as saturated where |phi'(z)| < sat_tol * sup|phi'|."""
    import jax.numpy as jnp

    from vgrun.nn import mlp, rnn

    dtype = jnp.dtype(cfg.dtype)
    if cfg.model.name == "custom":
        from vgrun.nn import custom

        shape = getattr(problem, "x_shape", ()) or (problem.n_in,)
        return custom.make(cfg, problem.n_in, problem.n_out, dtype, (cfg.batch_size, *shape))
    if cfg.model.name in RECURRENT:
        return rnn.make(cfg, problem.n_in, problem.n_out, dtype, problem.n_out_steps, problem.seq_steps)
    return mlp.make(cfg, problem.n_in, problem.n_out, dtype, sat_tol)


__all__ = ["Model", "make_model"]
