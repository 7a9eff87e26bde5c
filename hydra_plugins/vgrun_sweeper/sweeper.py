"""Hydra's basic sweeper, checking every job of a sweep before the first one runs.

Hydra's BasicSweeper composes the whole config of every job of a batch before launching
it, to catch composition errors early (~0.08 s a job), but checks no ranges: a sweep
`depth=5,10,20,0` trained three jobs before the fourth failed. This sweeper checks every
job of the whole sweep, whatever the batch size and launcher, as a single run is checked
(`vgrun.config.schema.validate`: types, choices, ranges), and composes one job per
distinct set of the overrides that change how a config composes (group choices, hydra
keys, additions, deletions); the plain values (`optimizer.lr=0.01,0.03 seed=0,1,2`) are
set on that config. A bad job is the command line's one-line error, exit 2, and the
sweep leaves no folder behind.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


@dataclass
class VgrunSweeperConf:
    _target_: str = "hydra_plugins.vgrun_sweeper.sweeper.VgrunSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="vgrun", node=VgrunSweeperConf, provider="vgrun")


def composition_signature(overrides: Sequence[str]) -> tuple:
    """The overrides of a job that can change how its config composes."""
    from vgrun.config.overrides import is_value_key

    return tuple(o for o in overrides if not is_value_key(o.split("=", 1)[0]))


class VgrunSweeper(BasicSweeper):
    def sweep(self, arguments: List[str]) -> Any:
        """Check every job of the sweep (types, choices and ranges, as a single run's) before the
        first one runs, whatever the launcher and batch size; a rejected sweep leaves no folder."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from vgrun.cli.main import bad_input, discard_unused
        from vgrun.config.schema import ConfigError

        params = self._parse_config() + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = [job for batch in self.split_arguments(parser.parse_overrides(params), None) for job in batch]
        try:
            self.check_jobs(jobs)
        except ConfigError as e:  # a swept value out of range: the command line's one-line error
            if self.config.get("resume") in (None, ""):  # a fresh sweep's folder, nothing in it yet: gone
                discard_unused(Path(str(self.config.hydra.sweep.dir)), made=("multirun.yaml", ".lock"))
            bad_input(e)
        return super().sweep(arguments)

    def check_jobs(self, jobs: Sequence[Sequence[str]]) -> None:
        """Raise ConfigError for the first job whose config is not valid."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf, open_dict, read_write

        from vgrun.cli.main import to_config
        from vgrun.config.overrides import check, is_value_key

        composed = {}
        parse = OverridesParser.create().parse_overrides
        for overrides in jobs:
            check(list(overrides))
            signature = composition_signature(overrides)
            if signature not in composed:
                base = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                with read_write(base), open_dict(base):
                    del base["hydra"]
                composed[signature] = base
            cfg = composed[signature].copy()
            values = [o for o in overrides if is_value_key(o.split("=", 1)[0])]
            with read_write(cfg), open_dict(cfg):
                for o in parse(values):
                    OmegaConf.update(cfg, o.key_or_group, o.value(), merge=False)
            to_config(cfg)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing left to check: `sweep` checked every job before the first batch."""

