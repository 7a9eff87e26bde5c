"""How a command ended, for its exit code: one `Outcome` per command, in a context variable.

Hydra calls the jobs and the sweep's callbacks and returns nothing to the caller; what
they learn (a failed job, a failed claim, whether the jobs ran in this process) goes into
the `Outcome` that `vgrun.cli.main` set before starting Hydra and reads after it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Outcome:
    failed_jobs: bool = False  # a sweep's job failed, or no job wrote a summary
    claims_failed: bool = False  # a preset's claim failed, or could not be judged
    ended_here: bool = False  # the sweep's jobs ran in this process or in pools it has shut down
    lone_run: bool = False  # a single run (not a sweep's job) finished
    interrupted: bool = False  # SIGINT / SIGTERM: the sweep's later jobs are skipped, its summary marked partial


OUTCOME: ContextVar[Outcome] = ContextVar("vgrun_outcome")


def outcome() -> Outcome:
    """The current command's Outcome (a fresh one where no command set it: a library call, a test)."""
    try:
        return OUTCOME.get()
    except LookupError:
        OUTCOME.set(o := Outcome())
        return o
