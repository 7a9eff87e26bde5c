"""`hydra/launcher=vectorized`: Hydra's basic sequential launcher, except that jobs sharing
one static signature are first trained together as one vmapped program (vgrun/vectorize.py).

    vgrun -m hydra/launcher=vectorized optimizer.lr=0.01,0.03,0.1,0.3 seed=0,1,2,3

Every job then runs through Hydra's own `run_job` (its folder, `.hydra/`, log, callbacks),
finding its results ready, so its files are those of a job run alone.
"""

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.vgrun_vectorized.launcher.VectorizedLauncher"
    max_members: int = 64  # jobs per vmapped program: memory grows with it


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf, provider="vgrun")


class VectorizedLauncher(Launcher):
    def __init__(self, max_members: int = 64) -> None:
        super().__init__()
        self.max_members = max_members
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _job_config(self, idx: int, overrides) -> DictConfig:
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        return sweep_config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from vgrun.sweeps import vectorize
        from vgrun.cli.main import StopFlag, console, to_config
        from vgrun.sweeps.sweep import job_run_dir

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = [self._job_config(initial_job_idx + i, o) for i, o in enumerate(job_overrides)]
        jobs = []
        for sweep_config in configs:
            run_dir = job_run_dir(sweep_config)
            job_cfg = copy.deepcopy(sweep_config)  # what run_job hands the task: the config without `hydra`
            with read_write(job_cfg), open_dict(job_cfg):
                del job_cfg["hydra"]
            try:
                cfg = to_config(job_cfg)
            except Exception:  # a bad job (ConfigError, ...) fails in run_job, on its own, as usual
                cfg = None
            jobs.append((run_dir, cfg))
        stop = StopFlag()  # Ctrl-C / SIGTERM: the group in flight ends interrupted, every job's folder says so
        trained, counts = vectorize.prepare(jobs, self.max_members, console, should_stop=stop)
        log.info("Launching %d jobs (%d of them in %d vectorized groups)", counts["jobs"], counts["vectorized"],
                 counts["groups"])
        runs: List[JobReturn] = []
        for idx, (overrides, sweep_config) in enumerate(zip(job_overrides, configs)):
            log.info(f"\t#{initial_job_idx + idx} : {' '.join(filter_overrides(overrides))}")
            with vectorize.handing(trained):
                runs.append(run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                                    config=sweep_config, job_dir_key="hydra.sweep.dir",
                                    job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs
