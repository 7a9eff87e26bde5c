"""Sweeps (`vgrun -m ...`): a fresh folder per sweep, resume, and the summary at the end.

    <sweep>/multirun.yaml              the sweep's config (Hydra)
    <sweep>/act=relu,depth=20/         one folder per job, named by its overrides
    <sweep>/sweep_summary.csv, .md     a row per job (SweepSummary, at the end of the sweep)
    <sweep>/sweep_gradients.png        |delta| against layer (or |dL/dh_t| against t), every job
    <sweep>/sweep_ratio.png            log10 first/last gradient ratio over two swept axes

The sweep folder is claimed with an exclusive mkdir, so two sweeps started in the same
microsecond (two processes) get two folders (`...-2`); the job folders inside differ by
their overrides, which Hydra's sweeper never repeats. `resume=<sweep folder>` runs the
same sweep into that folder again: jobs whose summary says completed or diverged are
kept, the rest (failed, skipped, interrupted, running, killed, missing) run again.

`register_resolvers` makes the folder resolvers known to OmegaConf; this module stays
light (no JAX, no pandas) because every run imports it.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vgrun.config.overrides import is_multirun
from vgrun.config.schema import ConfigError
from vgrun.sweeps.job import STOP
from vgrun.sweeps.outcome import outcome



def sweep_dir(resume, fresh: str) -> str:
    """The sweep folder: `resume` if given (it must exist), else `fresh`, claimed atomically.

    Hydra caches the value (use_cache), and copies the cache into every job's config,
    so the whole sweep, joblib workers and submitit jobs included, sees one folder.
    """
    if resume not in (None, ""):
        if not Path(str(resume)).is_dir():
            raise ConfigError("resume", resume, "an existing sweep folder (one holding multirun.yaml)")
        return str(resume)
    base = Path(fresh)
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in itertools.count(1):
        candidate = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return str(candidate)


def job_dir(overrides: str) -> str:
    """A job's folder name: its overrides (`act=relu,depth=20`), made a safe single name.

    A '/' in a value would nest folders, and a name past the filesystem's 255-byte limit
    would fail the job's mkdir; a long name keeps its readable start and gains a hash of the whole.
    """
    name = overrides.replace("/", "%2F") or "default"
    if len(name.encode()) > 200:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        name = name.encode()[:180].decode(errors="ignore") + "-" + digest
    return name


def register_resolvers() -> None:
    """${vgrun.sweep_dir:...} and ${vgrun.job_dir:...}, used by conf/config.yaml's hydra.sweep."""
    OmegaConf.register_new_resolver("vgrun.sweep_dir", sweep_dir, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("vgrun.job_dir", job_dir, replace=True)


def check_args(args: list[str]) -> None:
    """resume= names a sweep folder with -m (a run folder without: vgrun.cli.main.resume_run); one clear line
    before Hydra starts."""
    multirun = is_multirun(args)
    for a in args:
        if a.startswith("resume=") and a != "resume=null":
            value = a.split("=", 1)[1]
            if not multirun:  # a single run's folder (vgrun.cli.main.resume_run); a sweep's wants -m
                if (Path(value) / "multirun.yaml").exists():
                    raise ConfigError("resume", value, "a run folder; a sweep folder resumes with -m")
                continue
            if not (Path(value) / "multirun.yaml").exists():
                raise ConfigError("resume", value, "an existing sweep folder (one holding multirun.yaml)")
        if multirun and a in ("hydra/launcher=slurm", "hydra/launcher=submitit_slurm"):
            import shutil

            if shutil.which("sbatch") is None:  # submitit would fail deep inside, after the sweep folder is made
                raise ConfigError("hydra/launcher", a.split("=", 1)[1],
                                  "a launcher this machine can run (SLURM's sbatch is not on PATH): basic, cores, "
                                  "vectorized, joblib")


def output_folder(args: list[str]) -> tuple[str, Path]:
    """Where this command will write, and the key that said so: resume=, hydra.sweep.dir= or
    hydra.run.dir= up to its first interpolation, else ./outputs."""
    multirun = is_multirun(args)
    keys = ("resume", "hydra.sweep.dir") if multirun else ("hydra.run.dir",)
    for a in args:
        key, _, value = a.partition("=")
        if key in keys and value not in ("", "null"):
            return key, Path(value.split("${")[0] or ".")
    return "the output folder", Path("outputs")


FREE_BYTES_NEEDED = 4 << 20  # a default run writes ~1 MB; less free than this is a full disk


def check_output(args: list[str]) -> None:
    """The output folder can be written and its disk has room, before anything runs. Raises
    ConfigError (a folder that cannot be written: usage) or OSError (a full disk: runtime)."""
    import errno
    import os
    import shutil
    import tempfile

    key, target = output_folder(args)
    existing = Path(os.path.abspath(target))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(key, str(target), f"a folder vgrun can write ({existing} is not a folder)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ConfigError(key, str(target), f"a folder vgrun can write ({existing}: {e.strerror})") from None
    free = shutil.disk_usage(existing).free
    if free < FREE_BYTES_NEEDED:
        raise OSError(errno.ENOSPC, f"the disk holding {existing} is full ({free / 2**20:.1f} MiB free; a run needs a "
                                    f"few MiB): free some space or choose another folder with hydra.run.dir=",
                      str(existing))


def job_run_dir(sweep_config: DictConfig) -> Path:
    """The folder of one job of a sweep (its composed config): hydra.sweep.dir / hydra.sweep.subdir."""
    return Path(str(OmegaConf.select(sweep_config, "hydra.sweep.dir"))) / str(
        OmegaConf.select(sweep_config, "hydra.sweep.subdir"))


def in_process(launcher: str) -> bool:
    """Whether a launcher (its `_target_`) runs the jobs in this process, one after another."""
    return any(name in launcher for name in ("BasicLauncher", "VectorizedLauncher"))


def in_pool_worker() -> bool:
    """Whether this process is a joblib (loky) pool worker: `hydra/launcher=joblib`, or a worker of
    `hydra/launcher=cores` (not the process that launched the sweep, which runs jobs too)."""
    import multiprocessing

    return multiprocessing.current_process().name.startswith("LokyProcess")


def runs_jobs_here(launcher: str) -> bool:
    """Whether the process that launched the sweep runs jobs itself (its plotting libraries get loaded then)."""
    return in_process(launcher) or "CoresLauncher" in launcher


LOCK = ".lock"  # in a sweep folder while a process runs the sweep: its pid, host and start (vgrun.io.store.process)


def lock(folder: Path) -> None:
    """Hold the sweep folder for this process, or raise ConfigError naming the live process that
    holds it (a second `resume=` of a running sweep). A lock left by a process that is gone is taken over."""
    import json
    import os

    from vgrun.io import store

    path = folder / LOCK
    folder.mkdir(parents=True, exist_ok=True)  # a fresh sweep's folder: Hydra makes it after this callback
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            if holder.get("pid") == os.getpid() or not holder or store._gone(holder):
                path.unlink(missing_ok=True)  # ours already (a second callback), half-written, or stale
                continue
            running = f"pid {holder.get('pid')} on {holder.get('host')} is running it now"
            raise ConfigError("resume", str(folder), f"a sweep folder no live process is running ({running})") from None
        with os.fdopen(fd, "w") as f:
            json.dump(store.process(), f)
        return


def unlock(folder: Path) -> None:
    import json
    import os

    path = folder / LOCK
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


class SweepSummary(Callback):
    """At the end of a sweep: the table of every job (csv, markdown, printed) and the comparison plots."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        folder = Path(str(config.hydra.sweep.dir))
        try:
            lock(folder)
        except ConfigError as e:  # one line, exit 2 (SystemExit is not an Exception: Hydra lets it through)
            from rich.console import Console

            Console(stderr=True).print(f"[bold red]vgrun: error:[/] {e}", highlight=False, soft_wrap=True)
            sys.exit(2)
        stop = folder / STOP
        stop.unlink(missing_ok=True)  # a resumed sweep starts afresh after a fail_fast stop
        if not runs_jobs_here(str(OmegaConf.select(config, "hydra.launcher._target_", default=""))):
            # the jobs run in other processes: import the summary's libraries (~0.5 s) while they do
            from vgrun.viz.preload import preload

            preload(delay=5.0)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from rich.console import Console

        from vgrun.io.table import CompareError, load_table
        from vgrun.sweeps.compare import report

        outcome().ended_here = runs_jobs_here(str(OmegaConf.select(config, "hydra.launcher._target_", default="")))
        folder = Path(str(config.hydra.sweep.dir))
        unlock(folder)
        console = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets the whole table
        try:
            table = load_table([folder])
        except CompareError:
            console.print(f"sweep {folder}: no job wrote a summary")
            outcome().failed_jobs = True
            return
        partial = outcome().interrupted
        report(console, table, folder, title=f"sweep {folder}" + (" (partial: interrupted)" if partial else ""),
               partial=partial)
        outcome().failed_jobs = bool((table["status"] == "failed").any())  # the CLI exits non-zero: a script sees it
