"""The tests' compiled programs, kept for the whole session: tests whose jobs differ only in
dynamic values (seed, learning rate, ...) share one program, as a sweep's jobs do. Programs
compiled with and without XLA's costly optimizations (tests/conftest.py) are kept apart."""

import jax

from vgrun.training import loop
from vgrun.training.cache import ProgramCache

_PROGRAMS = {True: ProgramCache(keep=32), False: ProgramCache(keep=32)}


def programs() -> ProgramCache:
    """The session's programs, compiled as the running test compiles."""
    return _PROGRAMS[bool(jax.config.read("jax_disable_most_optimizations"))]


def run(cfg, **kw):
    """vgrun.training.loop.run with the session's programs."""
    return loop.run(cfg, cache=programs(), **kw)


def run_members(cfg, hps, **kw):
    """vgrun.training.loop.run_members with the session's programs."""
    return loop.run_members(cfg, hps, cache=programs(), **kw)
