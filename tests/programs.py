"""The tests' compiled programs, kept for the whole session: tests whose jobs differ only in
dynamic values (seed, learning rate, ...) share one program, as a sweep's jobs do."""

from vgrun.training import loop
from vgrun.training.cache import ProgramCache

PROGRAMS = ProgramCache(keep=32)


def run(cfg, **kw):
    """vgrun.training.loop.run with the session's programs."""
    return loop.run(cfg, cache=PROGRAMS, **kw)


def run_members(cfg, hps, **kw):
    """vgrun.training.loop.run_members with the session's programs."""
    return loop.run_members(cfg, hps, cache=PROGRAMS, **kw)
