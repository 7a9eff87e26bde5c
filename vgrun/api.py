"""The public API, for notebooks and scripts: the command line's steps, one function each.

    import vgrun
    cfg = vgrun.compose(["depth=20", "act=sigmoid", "steps=200"])   # a validated Config
    run = vgrun.train(cfg)                                          # trained, measured (in memory)
    vgrun.diagnose(run)["verdict"]                                  # 'vanishing'
    folder = vgrun.save(run, "outputs/notebook/sigmoid20")          # the run folder, as `vgrun` writes it
    traces = vgrun.load_run(folder)                                 # a DataFrame: step x layer
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vgrun.config.names import RECURRENT


@dataclass
class Run:
    """A trained job: its config and one `vgrun.training.loop.Result` per seed."""

    cfg: object
    results: list
    names: dict | None = None  # a custom network's: {"layers": its traced layers, "leaves": its parameter leaves}

    @property
    def recurrent(self) -> bool:
        return self.cfg.model.name in RECURRENT

    @property
    def result(self):
        """The median over seeds (the one Result with seeds=1): metrics [steps], traces [traced steps, ...]."""
        from vgrun.io.record import median

        return median(self.results)


def compose(overrides=(), preset: str | None = None):
    """The validated Config of `vgrun OVERRIDES...` (e.g. ["model=rnn", "data=adding"]); preset:
    an experiment's name, as +experiment=NAME. Raises vgrun.config.schema.ConfigError on bad input."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from vgrun.cli.main import preset_without_plus, register_schema
    from vgrun.config import overrides as checks
    from vgrun.config.schema import validate

    overrides = preset_without_plus(list(overrides)) + ([f"+experiment={preset}"] if preset else [])
    checks.check(overrides)
    register_schema()
    conf = Path(__file__).parent / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        dcfg = hydra_compose("config", overrides=overrides)
    return validate(OmegaConf.to_object(dcfg))


def train(cfg, on_chunk=None) -> Run:
    """Train cfg (its `seeds` seeds as one vmapped program) on this process's default JAX device."""
    from vgrun.config import hyper
    from vgrun.training import loop

    if cfg.model.name == "custom":  # its layers are its taps: known once it is built
        from vgrun.training.program import resolve

        cfg, names = resolve(cfg)
        return Run(cfg, loop.run_members(cfg, [hyper.values(cfg)] * cfg.seeds, on_chunk=on_chunk), names)
    return Run(cfg, loop.run_members(cfg, [hyper.values(cfg)] * cfg.seeds, on_chunk=on_chunk))


def diagnose(run: Run) -> dict:
    """The diagnosis of a trained run (the median over seeds): verdict, headline, gradient at step 0
    and over training, learning, signs, theory."""
    from vgrun.io.record import _diagnosis, _median_final

    return _diagnosis(run.cfg, run.result, run.recurrent, _median_final(run.results)[0])


def save(run: Run, folder) -> Path:
    """Write the run folder (summary.json, the Parquet tables, gradient_flow.png) into `folder`."""
    from vgrun.io import record, store
    from vgrun.viz.plots import run_figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"steps": run.cfg.steps, "config": store.config_dict(run.cfg), **(run.names or {})}
    summary, med = record.write(run.cfg, run.results, folder, summary, run.recurrent)
    store.write_summary(folder, summary)
    run_figure(folder / "gradient_flow.png", run.cfg, run.results, med.traces, summary["diagnosis"])
    return folder
