"""The JAX backend of a process: threads, device, the compilation cache, and float64.

float64 is a process-wide switch in JAX (`jax_enable_x64`). vgrun sets it in one place,
`use_dtype`, both ways, at the start of every job (`setup`) and of every run of the
host loop (`vgrun.training.loop`), so a job never inherits the previous job's setting.
"""

from __future__ import annotations

import os
from pathlib import Path

from vgrun.config.schema import ConfigError


def use_dtype(dtype: str) -> None:
    """float64 on for a float64 run, off for any other (the whole process, until set again)."""
    import jax

    on = dtype == "float64"
    if jax.config.jax_enable_x64 != on:
        jax.config.update("jax_enable_x64", on)


class _NoTpuProbe:
    """Drops JAX's note that it found no TPU library, which reaches the console through Hydra's
    logging in a sweep; every other backend message (a GPU without a CUDA jaxlib) stays."""

    @staticmethod
    def filter(record) -> bool:
        return "backend 'tpu'" not in record.getMessage()


def setup(cfg) -> None:
    """Threads, device, dtype and the persistent compilation cache, before the first JAX array.

    XLA sizes its CPU thread pool from the CPU affinity it sees when the backend starts;
    at width ~128 one thread per process is faster than two (see README), so we start
    the backend while pinned to `threads` cores and then restore the affinity.
    """
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pin = allowed is not None and cfg.threads < len(allowed)
    if pin:
        os.sched_setaffinity(0, sorted(allowed)[: cfg.threads])
    import logging

    import jax

    logging.getLogger("jax._src.xla_bridge").addFilter(_NoTpuProbe)
    if cfg.device == "cpu":  # before the backends start; auto keeps JAX's default (a GPU when it has one)
        jax.config.update("jax_platforms", "cpu")
    try:
        jax.devices()
    finally:
        if pin:
            from vgrun.training.cores import pin_all

            pin_all(allowed)  # every thread: those XLA started meanwhile inherited the narrow mask
    if cfg.device == "gpu":
        try:
            gpu = jax.devices("gpu")[0]
        except RuntimeError:
            raise ConfigError("device", "gpu", f"auto or cpu: JAX sees no GPU here (backend {jax.default_backend()!r})")
        jax.config.update("jax_default_device", gpu)
    cache = os.environ.get("VGRUN_CACHE", str(Path.home() / ".cache" / "vgrun" / "jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    use_dtype(cfg.dtype)
