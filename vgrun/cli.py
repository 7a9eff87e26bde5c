"""`vgrun key=value ...`: compose (Hydra), validate, train, write the run folder, print.

Hydra, omegaconf and rich live here and in the reporting code only. JAX is imported
after validation, so bad input is rejected in a fraction of a second.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vgrun import sweep  # noqa: F401  registers the sweep-folder resolver, here and in every sweep worker
from vgrun.config import Config, ConfigError, register, validate

console = Console(stderr=False)
err = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_FAILED = 1  # a run that raised, or a sweep with a failed job


def setup_jax(cfg: Config) -> None:
    """Threads, dtype and the persistent compilation cache, before the first JAX array.

    XLA sizes its CPU thread pool from the CPU affinity it sees when the backend starts;
    at width ~128 one thread per process is faster than two (see README), so we start
    the backend while pinned to `threads` cores and then restore the affinity.
    """
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pin = allowed is not None and cfg.threads < len(allowed)
    if pin:
        os.sched_setaffinity(0, sorted(allowed)[: cfg.threads])
    import jax

    if cfg.device == "cpu":  # before the backends start; auto keeps JAX's default (a GPU when it has one)
        jax.config.update("jax_platforms", "cpu")
    try:
        jax.devices()
    finally:
        if pin:
            from vgrun.cores import pin_all

            pin_all(allowed)  # every thread: those XLA started meanwhile inherited the narrow mask
    if cfg.device == "gpu":
        try:
            gpu = jax.devices("gpu")[0]
        except RuntimeError:
            raise ConfigError("device", "gpu", f"auto or cpu: JAX sees no GPU here (backend {jax.default_backend()!r})")
        jax.config.update("jax_default_device", gpu)
    cache = os.environ.get("VGRUN_CACHE", str(Path.home() / ".cache" / "vgrun" / "jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    # set both ways: a reused sweep worker (joblib) must not keep the previous job's float64
    jax.config.update("jax_enable_x64", cfg.dtype == "float64")


def preload(delay: float = 0.0) -> threading.Thread:
    """Import the writers' libraries (~0.8 s) in the background while XLA compiles and trains.
    delay: start after this many seconds, at the lowest priority (Linux: nice 19, this
    thread only): a sweep's parent waiting for its workers, whose start it must not slow."""
    def work():
        if delay:
            time.sleep(delay)  # the imports hold the GIL: the parent first hands the workers their jobs
            from vgrun.cores import lowest_priority

            lowest_priority()
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401

    # numpy.ma walks numpy's dtype table when first imported (matplotlib imports it); in the
    # thread that walk raced with JAX registering its dtypes here ("dictionary changed size
    # during iteration"), leaving a half-imported matplotlib that failed the run's plots
    import numpy.ma  # noqa: F401

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


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

    def __call__(self) -> bool:
        return self.signum is not None


def bad_input(e: ConfigError) -> None:
    """One line naming the key, the bad value and the valid choices; exit 2, no traceback."""
    err.print(f"[bold red]vgrun: error:[/] {e}", highlight=False, soft_wrap=True)
    sys.exit(EXIT_BAD_INPUT)


def to_config(dcfg: DictConfig) -> Config:
    cfg = OmegaConf.to_object(dcfg)
    return validate(cfg)


def run_job(dcfg: DictConfig) -> int:
    """One job. In a sweep a job that raises is a result (`failed`, see vgrun/job.py) and the sweep goes on;
    a single run that raises exits 1 with one line (the traceback goes to its log)."""
    from hydra.core.hydra_config import HydraConfig

    from vgrun.cores import CoreClaim
    from vgrun.job import Job
    from vgrun.store import config_dict

    job = Job.current()
    try:
        cfg = to_config(dcfg)
    except ConfigError as e:
        if not job.multirun:
            bad_input(e)
        return _failed(job, e, None, bool(dcfg.get("fail_fast")))
    config = config_dict(cfg)
    skip = job.skip_reason(config)
    if skip:
        job.skipped(skip, config)
        console.print(f"skipped {job.run_dir.name}: {skip}", highlight=False)
        return 0
    # parallel workers: one core each, claimed before JAX starts its threads (vgrun/cores.py)
    launcher = str(HydraConfig.get().launcher.get("_target_", ""))
    parallel = job.multirun and not sweep.in_process(launcher)
    core = CoreClaim().claim() if parallel and cfg.threads == 1 else None
    try:
        return train_job(cfg, job.run_dir)
    except ConfigError as e:  # found only once JAX is up: device=gpu without one, cma_es on a large net
        if not job.multirun:
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
    ~0.6 s, while the sweep waits). The worker has returned its last result and flushed its
    queues (multiprocessing does that before atexit), and every file of its jobs is written,
    atomically, and closed. The exit code is loky's (its worker script's `exitcode`), else 0."""
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
    setup_jax(cfg)
    loading = preload()  # after JAX's backend started: a CI sweep job once hung with the two imports overlapping
    if cfg.model.name == "doya":
        return run_doya(cfg, run_dir, t_start)

    from vgrun import hyper, record, store, train, vectorize
    from vgrun.report import print_run

    summary = {"status": "running", "steps": cfg.steps, "steps_done": 0, "config": store.config_dict(cfg)}
    store.write_summary(run_dir, summary)  # a hard kill leaves "running", never a silent gap
    recurrent = train.is_recurrent(cfg)
    title = f"{cfg.model.name} depth={cfg.depth} act={cfg.act} init={cfg.init.name} norm={cfg.norm} opt={cfg.optimizer.name}"
    if recurrent:
        title = f"{cfg.model.name} width={cfg.width} act={cfg.act} data={cfg.data.name} seq_len={cfg.seq_len}"
    done = vectorize.take(run_dir)  # trained already, with other jobs in one vmapped program
    if done is None:
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=console, transient=False,
        ) as progress:
            task = progress.add_task("compiling", total=cfg.steps, info="")

            def on_chunk(i, prog, m):
                progress.update(task, description="training", completed=i * prog.chunk_steps,
                                info=f"loss {m['loss'][-1]:.4f}")

            results = train.run_members(cfg, [hyper.values(cfg)] * cfg.seeds, on_chunk=on_chunk, should_stop=stop)
        group = {"members": cfg.seeds}
    else:
        results, group = done
    loading.join()
    summary, med = record.write(cfg, results, run_dir, summary, recurrent, title)
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
    print_run(console, cfg, summary, med.traces, run_dir, recurrent)
    if summary.get("pretrain"):  # vgrun/pretrain.py: what the pretraining phase did
        from vgrun.pretrain import summary_line

        console.print(summary_line(cfg, summary["pretrain"]), highlight=False, soft_wrap=True)
    if summary["status"] == "interrupted":
        err.print(f"interrupted after {summary['steps_done']} steps: partial run written to {run_dir}")
        sys.exit(EXIT_INTERRUPTED)
    return 0


def run_doya(cfg: Config, run_dir: Path, t_start: float) -> int:
    """model=doya: the one-neuron analysis instead of training."""
    from rich.panel import Panel

    from vgrun import doya, store

    summary = {"status": "running", "config": store.config_dict(cfg)}
    store.write_summary(run_dir, summary)
    with console.status("Doya's one-neuron network: bifurcations, loss landscape, gradient descent"):
        result = doya.run(cfg.doya, run_dir)
    summary.update(status="completed", doya=result, timing={"wall_s": time.perf_counter() - t_start})
    store.write_summary(run_dir, summary)
    console.print(Panel("\n".join(doya.summary_lines(result)), title=f"doya w={cfg.doya.w}", title_align="left"))
    console.print(f"files: [bold]{run_dir}[/] (summary.json, doya.png)")
    return 0


@hydra.main(version_base=None, config_path="conf", config_name="config")
def _hydra_main(dcfg: DictConfig) -> int:
    from vgrun import claims

    try:
        claims.check_form(dcfg)  # a malformed claim is bad input, caught before training (sweeps: on_multirun_start)
    except ConfigError as e:
        bad_input(e)
    code = run_job(dcfg)
    claims.after_job(dcfg)  # a single run judges its preset's claims; a sweep's are judged by ClaimsCallback
    from vgrun.job import Job

    _LONE_RUN[0] = not Job.current().multirun
    return code


_LONE_RUN = [False]  # a single run (not a sweep's job) finished: main may skip the interpreter's teardown


def _quick_exit(code: int = 0) -> None:
    """Exit without the interpreter's teardown (JAX's backend, the threads and module
    graph of hydra, matplotlib, pandas: ~0.4 s of an 8 s default job). Every file of the
    run is written, atomically, and closed by now; logs and streams are flushed here."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    from vgrun import overrides

    try:
        overrides.check(sys.argv[1:])
        sweep.check_args(sys.argv[1:])
    except ConfigError as e:
        bad_input(e)
    register()
    _hydra_main()
    from vgrun import claims

    # set by SweepSummary after writing the summary, and by after_job or ClaimsCallback (Hydra swallows a callback's exit)
    code = EXIT_FAILED if sweep.failed_jobs() else claims.EXIT_CLAIM_FAILED if claims.failed() else 0
    if _LONE_RUN[0] or sweep.ended_here():  # every file written, no worker or pool of ours left running
        _quick_exit(code)
    sys.exit(code)  # joblib's and submitit's launchers: their pools and workers shut down in order


if __name__ == "__main__":
    # run the imported module, not __main__: sweep workers (joblib, submitit) unpickle the task as vgrun.cli._hydra_main
    from vgrun.cli import main as _main

    _main()
