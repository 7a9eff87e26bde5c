"""Vectorized sweeps: the jobs of a sweep that differ only in vector keys run as one program.

`hydra/launcher=vectorized` (hydra_plugins/vgrun_vectorized) composes every job of the
sweep, groups them by `hyper.signature` (the config with seed, learning rate, init
scales, clip thresholds, ... masked: the values that change no array shape), trains
each group as one vmapped program (`vgrun.training.loop.run_members`), then hands every job to Hydra
exactly as the basic launcher would (`.hydra/`, log, callbacks), with its results
handed over in a context variable (`handing`, `take`), so each job's folder is written
by the same code as a lone run.

A group of one, a job asking for `seeds > 1`, a model without a training loop (doya,
gradient-free optimizers) or a job resume/fail-fast skips runs the ordinary way. A group
whose program raises falls back to running its jobs one by one, so one bad job cannot
take the others down.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

log = logging.getLogger("vgrun")

# the results trained ahead for the jobs being launched: job folder -> ([Result], timing fields)
TRAINED: ContextVar[dict] = ContextVar("vgrun_trained")


def _key(run_dir) -> str:
    return os.path.abspath(str(run_dir))


@contextmanager
def handing(trained: dict):
    """Inside: `take` finds the results of `trained` (from `prepare`)."""
    token = TRAINED.set(trained)
    try:
        yield
    finally:
        TRAINED.reset(token)


def waiting(run_dir) -> bool:
    """Whether results were trained for this job folder in a vectorized group (take them with `take`)."""
    return _key(run_dir) in TRAINED.get({})


def take(run_dir):
    """The results trained for this job folder in a vectorized group, or None (train it here)."""
    return TRAINED.get({}).pop(_key(run_dir), None)


def vectorizable(cfg) -> bool:
    from vgrun.config.names import GRADIENT_FREE

    return cfg.seeds == 1 and cfg.model.name != "doya" and cfg.optimizer.name not in GRADIENT_FREE


def groups(jobs: list) -> list[list]:
    """jobs: [(run_dir, cfg)] -> lists of jobs with one static signature, in sweep order."""
    from vgrun.config.hyper import signature

    out: dict[str, list] = {}
    for job in jobs:
        out.setdefault(signature(job[1]), []).append(job)
    return list(out.values())


def train_group(members: list, max_members: int, trained: dict, should_stop=lambda: False) -> None:
    """members: [(run_dir, cfg)] of one signature: train them together, their results into `trained`.
    should_stop() (SIGINT, SIGTERM): the part in flight ends interrupted after its chunk, with what it
    measured; no later part starts."""
    import jax

    from vgrun.config import hyper
    from vgrun.training import loop as train

    for start in range(0, len(members), max_members):
        if should_stop():
            return
        part = members[start: start + max_members]
        cfg0 = part[0][1]
        t0 = time.perf_counter()
        keys = [jax.random.PRNGKey(c.seed) for _, c in part]
        try:
            results = train.run_members(cfg0, [hyper.values(c) for _, c in part], keys=keys, should_stop=should_stop)
        except Exception as e:  # the jobs then run one by one, each failing (or not) on its own
            log.warning("vectorized group of %d failed (%s: %s); running its jobs one by one",
                        len(part), type(e).__name__, e)
            continue
        timing = {"members": len(part), "vectorized": True, "group_wall_s": time.perf_counter() - t0}
        for (run_dir, _), res in zip(part, results):
            trained[_key(run_dir)] = ([res], timing)


def prepare(job_configs: list, max_members: int, console=None, should_stop=lambda: False) -> tuple[dict, dict]:
    """job_configs: [(run_dir, validated cfg or None)]: train every vectorizable group of
    two or more jobs (after should_stop(), none more). Returns (the results by job folder,
    for `handing`; counts for the log: jobs, groups, vectorized jobs)."""
    from vgrun.training.backend import setup
    from vgrun.sweeps.job import Job
    from vgrun.io.store import config_dict

    todo = []
    for run_dir, cfg in job_configs:
        if cfg is None or not vectorizable(cfg):
            continue
        if Job(Path(run_dir), True, Path(run_dir).parent).skip_reason(config_dict(cfg)):
            continue
        todo.append((run_dir, cfg))
    batches = [g for g in groups(todo) if len(g) > 1]
    trained: dict = {}
    for g in batches:
        if should_stop():
            break
        cfg = g[0][1]
        setup(cfg)  # its dtype (float64 or not) for this group; threads from the first call
        if console is not None:
            console.print(f"vectorized: {len(g)} jobs as one program "
                          f"({cfg.model.name} depth={cfg.depth} act={cfg.act}, {cfg.steps} steps)", highlight=False)
        train_group(g, max_members, trained, should_stop)
    return trained, {"jobs": len(job_configs), "groups": len(batches), "vectorized": sum(len(g) for g in batches)}
