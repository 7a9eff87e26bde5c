"""Compiled programs kept for reuse: an explicit cache object, owned by whoever runs jobs."""

from __future__ import annotations

from vgrun.config import hyper


class ProgramCache:
    """The most recent `keep` Programs of a process with their compiled [init, chunk, evaluate].

    Jobs that share a static signature (`vgrun.config.hyper`: they differ only in seeds,
    learning rates, init scales, ...) share one program, so a sweep's later jobs skip
    tracing, lowering and loading from the compilation cache. keep=0 keeps nothing.
    """

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._programs: dict = {}  # (static signature, members, x64) -> (Program, [compiled init, chunk, evaluate])

    def get(self, cfg, n: int):
        """(Program of n members for cfg, its compiled [init, chunk, evaluate]: empty until compiled)."""
        import jax

        from vgrun.training.program import make_train

        key = (hyper.signature(cfg), n, bool(jax.config.jax_enable_x64))
        if key in self._programs:
            return self._programs[key]
        entry = (make_train(cfg, members=n), [])
        if self.keep > 0:
            if len(self._programs) >= self.keep:
                self._programs.pop(next(iter(self._programs)))
            self._programs[key] = entry
        return entry

    def __len__(self) -> int:
        return len(self._programs)

    def entries(self) -> list:
        """[(Program, compiled)], oldest first."""
        return list(self._programs.values())
