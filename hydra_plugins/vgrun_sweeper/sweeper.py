"""Hydra's basic sweeper, with a cheaper check of a batch's jobs before launching them.

Hydra's BasicSweeper composes the whole config of every job of a batch before launching
any, to catch composition errors early: ~0.08 s a job (a 16-job sweep on 2 cores started
its first job 1.8 s after launch; 0.9 s with this sweeper). Jobs that differ only in the
values of plain schema keys (`optimizer.lr=0.01,0.03 seed=0,1,2`) compose alike, and
every value is checked against the schema by `vgrun.config.overrides.check` (types, named
choices), as on the command line (a bad one, say from a preset's swept values, is the
command line's one-line error). So one job is composed per distinct set of its other
overrides (group choices, hydra keys, additions, deletions).
"""

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

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
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from vgrun.cli.main import bad_input
        from vgrun.config.schema import ConfigError
        from vgrun.config.overrides import check

        composed = set()
        for overrides in batch:
            try:
                check(list(overrides))
            except ConfigError as e:  # a preset's swept value: the command line's one-line error
                bad_input(e)
            signature = composition_signature(overrides)
            if signature not in composed:
                composed.add(signature)
                self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
