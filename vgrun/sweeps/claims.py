"""Judging a preset's claims after a single run or a sweep: claims.json, the table, the exit code.

A single run judges its own folder (`after_job`); a sweep's claims are judged over all its
jobs by `ClaimsCallback`, registered under hydra.callbacks in conf/config.yaml. A failed
claim is recorded in the command's `Outcome`, which `vgrun.cli.main` turns into exit 1.
"""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback

from vgrun.config.schema import ConfigError
from vgrun.io.claims import load, write
from vgrun.science.claims import evaluate, problems
from vgrun.sweeps.outcome import outcome
from vgrun.viz.claims import table


def judge_folder(folder, claims: list, sweep: bool, console=None, preset=None) -> dict:
    """Evaluate, write <folder>/claims.json, print the table, record a failure in the command's Outcome."""
    from rich.console import Console

    console = console or Console()
    runs = load(folder)
    report = {"preset": preset, **evaluate(list(claims), runs, sweep)}
    path = write(folder, report)
    console.print(table(report, f"Claims ({report['pass']} pass, {report['fail']} fail, {report['skip']} skipped)"))
    verdict = "[bold green]all claims hold[/]" if report["passed"] else "[bold red]a claim failed[/]"
    console.print(f"{verdict}: {path}")
    if not report["passed"]:
        outcome().claims_failed = True
    return report


def _plain(dcfg, key):
    from omegaconf import OmegaConf

    value = OmegaConf.select(dcfg, key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_form(dcfg) -> None:
    """Raise ConfigError for the first malformed claim of a single run (a sweep's: on_multirun_start)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.get().mode != RunMode.MULTIRUN and dcfg.get("check", True):
        _check_form(_plain(dcfg, "expect") or [])


def _check_form(expect: list) -> None:
    for i, claim in enumerate(expect):
        bad = problems(claim)
        if bad:
            raise ConfigError(f"expect[{i}]", claim,
                              "a well-formed claim: " + "; ".join(bad) + " (vgrun/science/claims.py)")


def after_job(dcfg) -> None:
    """A single run (not a sweep's job): judge the preset's claims on this run's folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN or not dcfg.get("check", True) or not dcfg.get("expect"):
        return
    judge_folder(Path(hc.runtime.output_dir), _plain(dcfg, "expect"), sweep=False,
                 preset=hc.runtime.choices.get("experiment"))


class ClaimsCallback(Callback):
    """Hydra callback: after a sweep, judge the preset's claims over all its jobs.

    Registered under hydra.callbacks in conf/config.yaml. It does not exit itself: Hydra
    turns a callback's exception into a warning and calls the other callbacks after it,
    so the failure goes into the command's Outcome and `vgrun.cli.main` exits 1 once
    Hydra has finished.
    """

    def on_multirun_start(self, config, **kwargs) -> None:
        """A malformed claim is bad input: one line and exit 2 before any job runs."""
        import sys

        if config.get("check", True):
            try:
                _check_form(_plain(config, "expect") or [])
            except ConfigError as e:
                from rich.console import Console

                Console(stderr=True).print(f"[bold red]vgrun: error:[/] {e}", highlight=False, soft_wrap=True)
                sys.exit(2)  # SystemExit is not an Exception: Hydra lets it through

    def on_multirun_end(self, config, **kwargs) -> None:
        from omegaconf import OmegaConf

        if not config.get("check", True) or not config.get("expect"):
            return
        try:
            judge_folder(Path(str(config.hydra.sweep.dir)), _plain(config, "expect"), sweep=True,
                         preset=OmegaConf.select(config, "hydra.runtime.choices.experiment"))
        except Exception as e:  # Hydra would only warn: an unjudged sweep must not exit 0
            outcome().claims_failed = True
            from rich.console import Console

            Console(stderr=True).print(f"[bold red]vgrun: claims could not be judged:[/] {type(e).__name__}: {e}")
