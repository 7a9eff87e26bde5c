"""`vgrun key=value ...`: compose (Hydra), validate, train, write the run folder, print.

Hydra, omegaconf and rich live here and in the reporting code only. JAX is imported
after validation, so bad input is rejected in a fraction of a second.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vgrun.config.names import RECURRENT
from vgrun.config.schema import Config, ConfigError, validate
from vgrun.sweeps import sweep
from vgrun.sweeps.outcome import OUTCOME, Outcome, outcome
from vgrun.training import backend
from vgrun.training.cache import ProgramCache
from vgrun.viz.preload import preload

# here, not in main(): a sweep worker (joblib, submitit) imports this module to unpickle its
# task, and resolves the job's folder (hydra.sweep.dir) before calling it
sweep.register_resolvers()

console = Console(stderr=False)
err = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_FAILED = 1  # a run that raised, or a sweep with a failed job
PROGRAMS = ProgramCache(keep=4)  # this process's compiled programs: a sweep's later jobs reuse them


def register_schema() -> None:
    """The schema (vgrun.config.schema.Config) in Hydra's ConfigStore, as `vgrun_schema`."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="vgrun_schema", node=Config)


class StopFlag:
    """SIGINT / SIGTERM ask the run to stop after the chunk in flight; a second one forces it."""

    def __init__(self):
        self.signum = None
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._handle)

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        outcome().interrupted = True  # a sweep runs no later job (run_job) and marks its summary partial

    def __call__(self) -> bool:
        return self.signum is not None


def bad_input(e: ConfigError) -> None:
    """One line naming the key, the bad value and the valid choices; exit 2, no traceback."""
    err.print(f"[bold red]vgrun: error:[/] {e}", highlight=False, soft_wrap=True)
    sys.exit(EXIT_BAD_INPUT)


def discard_unused(run_dir: Path, made: tuple = (".hydra", "cli.log")) -> None:
    """A rejected command's folder, holding only the files it made itself (a run's: Hydra's .hydra/ and
    cli.log; a sweep's: multirun.yaml, .lock): removed, with its dated parent when that is left empty.
    A folder holding anything else is left alone."""
    import shutil

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or any(p.name not in made for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()
    except OSError:
        pass


def to_config(dcfg: DictConfig) -> Config:
    cfg = OmegaConf.to_object(dcfg)
    return validate(cfg)


def run_job(dcfg: DictConfig) -> int:
    """One job. In a sweep a job that raises is a result (`failed`, see vgrun.sweeps.job) and the sweep goes on;
    a single run that raises exits 1 with one line (the traceback goes to its log)."""
    from hydra.core.hydra_config import HydraConfig

    from vgrun.training.cores import CoreClaim
    from vgrun.sweeps.job import Job
    from vgrun.io.store import config_dict

    job = Job.current()
    try:
        cfg = to_config(dcfg)
    except ConfigError as e:
        if not job.multirun:
            discard_unused(job.run_dir)
            bad_input(e)
        return _failed(job, e, None, bool(dcfg.get("fail_fast")))
    config = config_dict(cfg)
    from vgrun.sweeps import vectorize
    from vgrun.sweeps.job import INTERRUPTED_SKIP

    stopped = job.multirun and outcome().interrupted and not vectorize.waiting(job.run_dir)
    skip = job.skip_reason(config) or (INTERRUPTED_SKIP if stopped else None)
    if skip:
        job.skipped(skip, config)
        console.print(f"skipped {job.run_dir.name}: {skip}", highlight=False)
        return 0
    # parallel workers: one core each, claimed before JAX starts its threads (vgrun.training.cores)
    launcher = str(HydraConfig.get().launcher.get("_target_", ""))
    parallel = job.multirun and not sweep.in_process(launcher)
    core = CoreClaim().claim() if parallel and cfg.threads == 1 else None
    try:
        return train_job(cfg, job.run_dir)
    except ConfigError as e:  # found only once JAX is up: device=gpu without one, cma_es on a large net
        if not job.multirun:
            discard_unused(job.run_dir)
            bad_input(e)
        return _failed(job, e, config, cfg.fail_fast)
    except Exception as e:  # anything: a bug, out of memory, a missing file; Ctrl-C and exits pass through
        return _failed(job, e, config, cfg.fail_fast)
    finally:
        if core is not None:
            core.release()
        if parallel and sweep.in_pool_worker():  # the last exit handler, so the first to run: after every
            atexit.unregister(_worker_exit)  # handler this job's imports (JAX, matplotlib, ...) registered
            atexit.register(_worker_exit)


def _worker_exit() -> None:
    """A joblib worker's exit without the interpreter's teardown (its JAX backend and module graph:
    slow, and the sweep waits; see benchmarks/README.md). The worker has returned its last
    result and flushed its queues (multiprocessing does that before atexit), and every file of
    its jobs is written, atomically, and closed. The exit code is loky's (its worker script's `exitcode`), else 0."""
    code = getattr(sys.modules.get("__main__"), "exitcode", 0)
    _quick_exit(code if isinstance(code, int) else 0)


def _failed(job, e: Exception, config, fail_fast: bool) -> int:
    message = job.failed(e, config, fail_fast)
    err.print(f"[bold red]vgrun: error:[/] {job.run_dir.name} failed: {message} (traceback in {job.log_path()})",
              highlight=False, soft_wrap=True)
    if not job.multirun:
        sys.exit(EXIT_FAILED)
    return EXIT_FAILED


def train_job(cfg: Config, run_dir: Path) -> int:
    stop = StopFlag()
    t_start = time.perf_counter()
    backend.setup(cfg)
    loading = preload()  # after JAX's backend started: the two imports overlapping can hang (benchmarks/README.md)
    if cfg.model.name == "doya":
        return run_doya(cfg, run_dir, t_start, stop)
    from vgrun.training.program import resolve

    cfg, names = resolve(cfg)  # a custom model's layers are its taps, and its leaves: known once it is built

    from vgrun.config import hyper
    from vgrun.io import record, store, stream
    from vgrun.sweeps import vectorize
    from vgrun.training import loop as train
    from vgrun.viz.console import print_run, write_report
    from vgrun.viz.plots import run_figure

    start = resumable(cfg, run_dir)
    summary = {"status": "running", "steps": cfg.steps, "steps_done": 0, "config": store.config_dict(cfg),
               "process": store.process(), **names}
    store.write_summary(run_dir, summary)  # a hard kill leaves "running", never a silent gap
    recurrent = cfg.model.name in RECURRENT
    from vgrun.sweeps.job import Job

    brief = Job.current().multirun and not cfg.verbose  # a sweep's job: one line (its report is in report.txt)
    done = vectorize.take(run_dir)  # trained already, with other jobs in one vmapped program
    writer = None
    if done is None:
        writer = stream.Stream(run_dir)  # every finished chunk on disk (vgrun.io.stream)
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=console, transient=brief, disable=brief and not console.is_terminal,
        ) as progress:
            task = progress.add_task("compiling", total=cfg.steps, info="")

            def on_chunk(i, prog, m):
                progress.update(task, description="training", completed=i * prog.chunk_steps,
                                info=f"loss {m['loss'][-1]:.4f}")

            if start is not None:  # the steps the earlier run finished
                progress.update(task, description="resuming", completed=sum(m["loss"].shape[-1] for m in start.metrics))
            try:
                results = train.run_members(cfg, [hyper.values(cfg)] * cfg.seeds, on_chunk=on_chunk, should_stop=stop,
                                            cache=PROGRAMS, record=writer, start=start)
            except BaseException:
                writer.close(remove=False)  # what it measured stays (and may be resumed)
                raise
        group = {"members": cfg.seeds}
    else:
        results, group = done
    loading.join()
    summary, med = record.write(cfg, results, run_dir, summary, recurrent)
    if writer is not None:  # the tables hold every chunk now; an interrupted run keeps its state to resume
        writer.close(remove=summary["status"] != "interrupted")
    run_figure(run_dir / "gradient_flow.png", cfg, results, med.traces, summary["diagnosis"])
    res = results[0]
    steps = len(med.metrics["loss"])  # this job's own steps (every member of its program advanced as fast)
    summary["timing"] = {
        "wall_s": time.perf_counter() - t_start,
        "compile_s": res.compile_s,
        "train_s": res.train_s,
        "steps_per_s": steps / res.train_s if res.train_s > 0 else None,
        **group,
    }
    store.write_summary(run_dir, summary)
    if brief:
        from vgrun.viz.console import job_line

        console.print(job_line(summary, run_dir), highlight=False, soft_wrap=True)  # one write: never interleaved
    else:
        print_run(console, cfg, summary, med.traces, run_dir, recurrent)
    write_report(run_dir, lambda c: print_run(c, cfg, summary, med.traces, run_dir, recurrent))
    if summary.get("pretrain"):  # vgrun.training.pretrain: what the pretraining phase did
        from vgrun.training.pretrain import summary_line

        console.print(summary_line(cfg, summary["pretrain"]), highlight=False, soft_wrap=True)
    if summary["status"] == "interrupted":
        err.print(f"interrupted after {summary['steps_done']} steps: partial run written to {run_dir}", soft_wrap=True)
        outcome().interrupted = True
        from vgrun.sweeps.job import Job

        if not Job.current().multirun:
            sys.exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED  # a sweep goes on to write its summary, skipping the jobs not started
    return 0


def resumable(cfg: Config, run_dir: Path):
    """What an earlier run of this job streamed (vgrun.io.stream), when `resume` is set and the
    earlier run had the same config; None: train from the start."""
    from vgrun.io import store, stream
    from vgrun.sweeps.job import _same, read_summary

    if not cfg.resume or not stream.exists(run_dir):
        return None
    earlier = read_summary(run_dir)
    if not _same(earlier.get("config", {}), store.config_dict(cfg)):
        why = "its config differs" if earlier else "its summary.json cannot be read"
        err.print(f"resume: {run_dir}: {why}; training from the start", highlight=False, soft_wrap=True)
        return None
    try:
        return stream.load(run_dir)
    except (OSError, ValueError, KeyError) as e:  # a chunk file lost with the machine: start again
        err.print(f"resume: {run_dir}: the streamed state cannot be read ({e}); training from the start",
                  highlight=False, soft_wrap=True)
        return None


def run_doya(cfg: Config, run_dir: Path, t_start: float, stop=lambda: False) -> int:
    """model=doya: the one-neuron analysis instead of training; SIGINT / SIGTERM stop it between
    its parts (status interrupted, exit 130)."""
    from rich.panel import Panel

    from vgrun.io import store
    from vgrun.science import doya
    from vgrun.viz.doya import plot

    summary = {"status": "running", "config": store.config_dict(cfg), "process": store.process()}
    store.write_summary(run_dir, summary)
    with console.status("Doya's one-neuron network: bifurcations, loss landscape, gradient descent"):
        try:
            analysis = doya.analyze(cfg.doya, stop)
        except doya.Stopped as e:
            summary.update(status="interrupted", error=f"interrupted: {e}",
                           timing={"wall_s": time.perf_counter() - t_start})
            store.write_summary(run_dir, summary)
            err.print(f"interrupted ({e}): {run_dir}", highlight=False, soft_wrap=True)
            sys.exit(EXIT_INTERRUPTED)
        plot(analysis, run_dir / "doya.png")
    result = doya.summary(analysis)
    from vgrun.io.provenance import environment

    summary.update(status="completed", doya=result, environment=environment(),
                   timing={"wall_s": time.perf_counter() - t_start})
    store.write_summary(run_dir, summary)
    console.print(Panel("\n".join(doya.summary_lines(result)), title=f"doya w={cfg.doya.w}", title_align="left"))
    console.print(f"files: [bold]{run_dir}[/] (summary.json, doya.png)", soft_wrap=True)  # the path stays whole
    return 0


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def _hydra_main(dcfg: DictConfig) -> int:
    from vgrun.sweeps import claims

    try:
        claims.check_form(dcfg)  # a malformed claim is bad input, caught before training (sweeps: on_multirun_start)
    except ConfigError as e:
        from vgrun.sweeps.job import Job

        discard_unused(Job.current().run_dir)
        bad_input(e)
    code = run_job(dcfg)
    claims.after_job(dcfg)  # a single run judges its preset's claims; a sweep's are judged by ClaimsCallback
    from vgrun.sweeps.job import Job

    outcome().lone_run = not Job.current().multirun  # main may then skip the interpreter's teardown
    return code


def _quick_exit(code: int = 0) -> None:
    """Exit without the interpreter's teardown (JAX's backend, the threads and module
    graph of hydra, matplotlib, pandas: a noticeable share of a short job; see
    benchmarks/README.md). Every file of the run is written, atomically, and closed by now;
    logs and streams are flushed here."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def version() -> str:
    """vgrun's version, with the JAX it runs on."""
    from importlib import metadata

    try:
        jax = metadata.version("jax")
    except metadata.PackageNotFoundError:
        jax = "not installed"
    return f"vgrun {metadata.version('vgrun')} (jax {jax}, python {sys.version.split()[0]})"


def preset_without_plus(args: list[str]) -> list[str]:
    """`experiment=NAME` as `+experiment=NAME`: the preset group is not in the defaults list, so
    Hydra wants the `+`; a user need not know that."""
    return [f"+{a}" if a.startswith("experiment=") else a for a in args]


def resume_run(args: list[str]) -> list[str]:
    """`vgrun resume=<run folder>`: that run's own overrides, into its own folder, going on from
    the last chunk it streamed (vgrun.io.stream). Raises ConfigError for a folder that cannot be resumed."""
    from vgrun.io import stream

    from vgrun.config.overrides import is_multirun

    if is_multirun(args):
        return args
    given = [a for a in args if a.startswith("resume=") and a != "resume=null"]
    if not given:
        return args
    folder = Path(given[0].split("=", 1)[1])
    others = [a for a in args if a not in given]
    if others:
        raise ConfigError("resume", str(folder), "resume=<run folder> alone: the run's own overrides are read from "
                                                 f"its .hydra/overrides.yaml (got also {' '.join(others)})")
    if not (folder / "summary.json").exists() or not (folder / ".hydra" / "overrides.yaml").exists():
        raise ConfigError("resume", str(folder), "a run folder (one holding summary.json and .hydra/), or with -m "
                                                 "a sweep folder")
    if not stream.exists(folder):
        raise ConfigError("resume", str(folder), "a run that stopped before its end (this one has nothing to go on "
                                                 "from: it finished, or streamed no chunk)")
    from omegaconf import OmegaConf

    own = [str(o) for o in OmegaConf.load(folder / ".hydra" / "overrides.yaml")]
    own = [o for o in own if not o.startswith(("resume=", "hydra.run.dir="))]
    quoted = "'" + str(folder).replace("\\", "\\\\").replace("'", "\\'") + "'"  # a sweep job's name holds , and =
    return [*own, f"hydra.run.dir={quoted}", f"resume={quoted}"]


def shell_completion(args: list[str]) -> None:
    """`vgrun -sc install=bash` (zsh, fish; uninstall=, query=): Hydra's shell completion, which
    vgrun's checks of overrides never see; a query for a plain key's values vgrun answers itself."""
    from vgrun.cli import help

    commands = ("install", "uninstall", "query")
    asked = [a for a in args if a.split("=", 1)[0] in commands]
    if len(asked) != 1 or "=" not in asked[0]:
        given = " ".join(a for a in args if a not in help.COMPLETION_FLAGS)
        bad_input(ConfigError("-sc", given, "install=SHELL, uninstall=SHELL or query=SHELL, SHELL one of "
                              + ", ".join(help.SHELLS), [f"{c}={s}" for c in commands for s in help.SHELLS]))
    command, shell = asked[0].split("=", 1)
    if shell not in help.SHELLS:
        bad_input(ConfigError(command, shell, "one of " + ", ".join(help.SHELLS), help.SHELLS))
    line = os.environ.get("COMP_LINE", "")
    if command == "query" and not line.strip():
        bad_input(ConfigError("COMP_LINE", line, "the command line being typed, as the completion that "
                                                 f"`vgrun -sc install={shell}` prints sets it"))
    if not help.answer_query(args):
        words = line.split(" ")  # the word being typed stays as typed
        os.environ["COMP_LINE"] = " ".join([*preset_without_plus(words[:-1]), words[-1]])
        register_schema()
        _hydra_main()
    sys.exit(0)


PRINT_ONLY = ("--hydra-help", "--cfg", "-c", "--info", "-i")  # Hydra prints, runs nothing, writes nothing


def main() -> None:
    from vgrun.cli import help
    from vgrun.config import overrides

    if any(a in ("--version", "-V") for a in sys.argv[1:]):
        print(version())
        sys.exit(0)
    if any(a in help.HELP_FLAGS for a in sys.argv[1:]):
        help.show(help.help_text())
        sys.exit(0)
    if any(a in help.COMPLETION_FLAGS for a in sys.argv[1:]):
        shell_completion(sys.argv[1:])
    sys.argv[1:] = preset_without_plus(sys.argv[1:])
    try:
        sys.argv[1:] = resume_run(sys.argv[1:])
        overrides.check(sys.argv[1:])
        sweep.check_args(sys.argv[1:])
        if not any(a in PRINT_ONLY for a in sys.argv[1:]):
            sweep.check_output(sys.argv[1:])
    except ConfigError as e:
        bad_input(e)
    except OSError as e:  # a full disk
        err.print(f"[bold red]vgrun: error:[/] {e.strerror}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_FAILED)
    register_schema()
    OUTCOME.set(ended := Outcome())
    _hydra_main()
    # set by SweepSummary after writing the summary, and by after_job or ClaimsCallback
    # (Hydra swallows a callback's exit)
    code = EXIT_FAILED if ended.failed_jobs or ended.claims_failed else 0
    code = EXIT_INTERRUPTED if ended.interrupted else code
    if ended.lone_run or ended.ended_here:  # every file written, no worker or pool of ours left running
        _quick_exit(code)
    sys.exit(code)  # joblib's and submitit's launchers: their pools and workers shut down in order


if __name__ == "__main__":
    # run the imported module, not __main__: sweep workers (joblib, submitit) unpickle the task
    # as vgrun.cli.main._hydra_main
    from vgrun.cli.main import main as _main

    _main()
