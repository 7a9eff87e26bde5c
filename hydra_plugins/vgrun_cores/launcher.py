"""`hydra/launcher=cores`: every core busy with a job of its own, the launching process's too.

    vgrun -m hydra/launcher=cores depth=5,10,20,40 act=sigmoid,tanh,relu

One single-threaded XLA process per core (vgrun.training.cores pins each to a core of its own),
on joblib's process pool (loky), as Hydra's joblib launcher does, with one difference: the
process that launched the sweep is one of them. It trains jobs itself, in-process as
Hydra's basic launcher does, while `n_jobs - 1` pool workers train the others; every
process takes the next job from one queue, so a faster one takes more. Against a pool of
one worker per core this saves a whole process's start (Python, Hydra, JAX, the first
plot) and the launching process's idle core while the workers start, and the sweep
summary is drawn by a process whose plotting libraries are already loaded.

A worker that dies (killed, out of memory) takes only its job with it: that job is
recorded `failed` with the reason, the pool is started again and the sweep goes on (with
`fail_fast=true` it stops there, as it does at a job that raised).
"""

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class CoresLauncherConf:
    _target_: str = "hydra_plugins.vgrun_cores.launcher.CoresLauncher"
    n_jobs: int = -1  # processes at once, this one included; -1: one per core this process may use


ConfigStore.instance().store(group="hydra/launcher", name="vgrun_cores_schema", node=CoresLauncherConf, provider="vgrun")


def processes(n_jobs: int, jobs: int) -> int:
    """How many processes train at once: n_jobs (-1: the cores this process may use, counting
    its CPU affinity and cgroup quota), never more than there are jobs, at least one."""
    if n_jobs < 0:
        from joblib import cpu_count

        n_jobs = cpu_count()
    return max(1, min(n_jobs, jobs))


def _sweep_config(hydra_context: HydraContext, config: DictConfig, idx: int, overrides) -> DictConfig:
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    return sweep_config


def _run(hydra_context: HydraContext, config: DictConfig, task_function: TaskFunction, idx: int,
         overrides) -> JobReturn:
    sweep_config = _sweep_config(hydra_context, config, idx, overrides)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def _in_worker(idx: int, overrides, payload: bytes) -> JobReturn:
    """A pool worker's job. The worker was started by the launching process, perhaps while that
    was pinned to its own core: it takes back the whole affinity first (vgrun.training.cores pins it)."""
    import pickle

    from vgrun.training.cores import pin_all

    hydra_context, config, task_function, singleton_state, affinity = pickle.loads(payload)
    if affinity is not None:
        pin_all(affinity)
    setup_globals()
    Singleton.set_state(singleton_state)
    return _run(hydra_context, config, task_function, idx, overrides)


class CoresLauncher(Launcher):
    def __init__(self, n_jobs: int = -1) -> None:
        super().__init__()
        self.n_jobs = n_jobs
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        queue = deque(enumerate(job_overrides, initial_job_idx))
        n = processes(self.n_jobs, len(queue))
        log.info("Launching %d jobs on %d processes (this one and %d pool workers), sweep output dir: %s",
                 len(queue), n, n - 1, self.config.hydra.sweep.dir)
        for idx, overrides in queue:
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        guard, results, errors = threading.Lock(), {}, []

        def take():
            with guard:
                return queue.popleft() if queue else None

        payload = self._payload() if n > 1 else b""
        # each worker gets its first job here: its process starts now, while this one still has every
        # core (a child inherits its affinity), then a thread of its own feeds it the next ones
        workers = [_Worker(payload) for _ in range(n - 1)]
        feeders = []
        for w in workers:
            job = take()
            feeders.append(threading.Thread(target=w.feed, args=(job, w.submit(job), take, results, errors,
                                                                  self._crashed), daemon=True))
            feeders[-1].start()
        try:
            while (job := take()) is not None:  # this process is one of the n
                idx, overrides = job
                results[idx] = _run(self.hydra_context, self.config, self.task_function, idx, overrides)
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        finally:  # also on Ctrl-C or an exit from a job: no new job starts, the ones in flight finish
            with guard:
                queue.clear()
            for t in feeders:
                t.join()
            for w in workers:
                w.shutdown()
        if errors:
            raise errors[0]
        return [results[i] for i in sorted(results)]

    def _payload(self) -> bytes:
        """What every worker job needs, pickled once, before this process runs a job of its own
        (its jobs change Hydra's singletons and pin it to a core)."""
        try:
            import cloudpickle  # joblib's own pickler for tasks (Hydra's resolvers include lambdas)
        except ImportError:  # older joblib vendored it
            from joblib.externals import cloudpickle

        affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return cloudpickle.dumps((self.hydra_context, self.config, self.task_function, Singleton.get_state(), affinity))

    def _crashed(self, idx: int, overrides, exc: BaseException) -> JobReturn:
        """A job whose worker died: recorded failed (summary.json, with the reason), as a job that raised
        is (vgrun.sweeps.job): a result of the sweep, which goes on and exits 1."""
        from vgrun.io import store
        from vgrun.cli.main import EXIT_FAILED
        from vgrun.sweeps.job import read_summary, stop_sweep
        from vgrun.sweeps.sweep import job_run_dir

        sweep_config = _sweep_config(self.hydra_context, self.config, idx, overrides)
        run_dir = job_run_dir(sweep_config)
        codes = [line.strip() for line in str(exc).splitlines() if "exit code" in line]  # loky: "{SIGKILL(-9)}"
        message = f"the worker process running this job died ({type(exc).__name__}{': ' + codes[0] if codes else ''})"
        summary = read_summary(run_dir)
        # "killed": the record of the dead worker's job (vgrun.io.store.load_summary); any other status is the
        # end the job recorded itself (interrupted, ...)
        if summary.get("status", "running") in ("running", "killed"):
            summary.pop("killed", None)
            summary.update(status="failed", error=message, log=str(run_dir / "cli.log"))
            run_dir.mkdir(parents=True, exist_ok=True)
            store.write_summary(run_dir, summary)
            log.error("%s: %s", run_dir.name, message)
            if sweep_config.get("fail_fast"):  # as for a job that raised: every later job skips itself
                stop_sweep(Path(str(sweep_config.hydra.sweep.dir)), run_dir)
        ret = JobReturn(overrides=list(overrides), working_dir=os.getcwd())
        ret.status, ret._return_value = JobStatus.COMPLETED, EXIT_FAILED  # as vgrun's own failed jobs return
        return ret


class _Worker:
    """One loky process, fed one job at a time by a thread of the launching process. Each worker has
    a pool of its own, so that one dying (a pool breaks whole) fails no other worker's job."""

    def __init__(self, payload: bytes):
        self.payload, self.pool = payload, None

    def submit(self, job):
        from joblib.externals.loky import ProcessPoolExecutor

        if self.pool is None:
            self.pool = ProcessPoolExecutor(max_workers=1)
        idx, overrides = job
        return self.pool.submit(_in_worker, idx, overrides, self.payload)

    def feed(self, job, future, take, results: dict, errors: list, crashed) -> None:
        """Wait for `job` (submitted as `future`), then submit and wait for the next from `take()`, until none is left."""
        from joblib.externals.loky.process_executor import BrokenProcessPool

        try:
            while job is not None:
                idx, overrides = job
                try:
                    results[idx] = future.result()
                except BrokenProcessPool as e:  # the process died: this job failed, a new process takes the next
                    results[idx] = crashed(idx, overrides, e)
                    self.pool = None
                job = take()
                if job is not None:
                    future = self.submit(job)
        except BaseException as e:  # noqa: BLE001  raised in the launching thread once the others are done
            errors.append(e)

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
