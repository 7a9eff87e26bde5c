"""Sweeps end to end, in subprocesses: folders, the summary, failures, fail-fast, resume, launchers, the cache."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

TINY = ["width=8", "batch_size=16", "steps=20", "chunks=1", "act=tanh"]


def vgrun(args, cwd, env=None, wait=True):
    cmd = [sys.executable, "-m", "vgrun.cli.main", *args]
    kw = dict(cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if not wait:
        return subprocess.Popen(cmd, **kw)
    return subprocess.run(cmd, timeout=300, **kw)


def job_name(depth):
    return f"act=tanh,batch_size=16,chunks=1,depth={depth},steps=20,width=8"


def summary(path):
    return json.loads((path / "summary.json").read_text())


def block(sweep, depth):
    """A real failure: a folder squats on the job's traces.parquet, so writing the table raises."""
    (sweep / job_name(depth) / "traces.parquet").mkdir(parents=True)


def test_failure_is_contained_reported_and_resumed(tmp_path):
    sweep = tmp_path / "sweep"
    block(sweep, 3)
    p = vgrun(["-m", "depth=2,3", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert p.returncode == 1, p.stderr  # the sweep finished, and says a job failed
    assert "Traceback" not in p.stdout + p.stderr
    ok, bad = sweep / job_name(2), sweep / job_name(3)
    # a job in one line (its full report in report.txt; verbose=true prints it)
    assert [line for line in p.stdout.splitlines() if line.startswith(f"{job_name(2)}: completed, ")]
    assert "Gradient norms per layer" not in p.stdout and "Gradient norms per layer" in (ok / "report.txt").read_text()
    assert "libtpu" not in p.stdout + p.stderr
    assert summary(ok)["status"] == "completed" and summary(ok)["config"]["depth"] == 2
    failed = summary(bad)
    assert failed["status"] == "failed" and failed["config"]["depth"] == 3
    assert "traces.parquet" in failed["error"] and failed["log"] == str(bad / "cli.log")
    assert "Traceback" in (bad / "cli.log").read_text()  # the traceback is in the job's log
    table = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(table["job"]) == [job_name(2), job_name(3)]
    assert list(table["status"]) == ["completed", "failed"]
    row = table.iloc[0]
    s = summary(ok)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert abs(row[key] - s["final"][key]) <= 1e-12 * abs(s["final"][key])
    assert abs(row["ratio_first_last"] / s["diagnosis"]["ratio_first_last"] - 1) < 1e-12
    assert row["verdict"] == s["diagnosis"]["verdict"] and row["wall_s"] > 0
    assert table.iloc[1]["error"] == failed["error"] and table.iloc[1]["log"] == failed["log"]
    md = (sweep / "sweep_summary.md").read_text()
    assert "failed" in md and failed["error"] in md and str(bad / "cli.log") in md
    assert "failed" in p.stdout and failed["error"] in p.stdout.replace("\n", "")
    for png in ("sweep_gradients.png", "sweep_ratio.png"):
        assert (sweep / png).stat().st_size > 10_000

    # resume: the completed job is kept untouched, the failed one runs again
    (bad / "traces.parquet").rmdir()
    kept = (ok / "steps.parquet").stat().st_mtime_ns
    p = vgrun(["-m", "depth=2,3", *TINY, f"resume={sweep}"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert (ok / "steps.parquet").stat().st_mtime_ns == kept
    assert summary(bad)["status"] == "completed" and summary(bad)["steps_done"] == 20
    assert sorted(d.name for d in sweep.iterdir() if d.is_dir()) == [job_name(2), job_name(3)]
    assert list(pd.read_csv(sweep / "sweep_summary.csv")["status"]) == ["completed", "completed"]


@pytest.mark.long  # a second failing sweep (4 s); the fast suite keeps the contained failure above
def test_fail_fast_stops_the_sweep_at_the_first_failure(tmp_path):
    sweep = tmp_path / "sweep"
    block(sweep, 2)
    p = vgrun(["-m", "depth=2,3,4", *TINY, "fail_fast=true", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert p.returncode == 1, p.stderr
    assert summary(sweep / job_name(2))["status"] == "failed"
    for depth in (3, 4):
        s = summary(sweep / job_name(depth))
        assert s["status"] == "skipped" and job_name(2) in s["error"]
        assert not (sweep / job_name(depth) / "steps.parquet").exists()
    table = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(table["status"]) == ["failed", "skipped", "skipped"]


def test_a_failed_single_run_is_one_line(tmp_path):
    run = tmp_path / "run"
    (run / "traces.parquet").mkdir(parents=True)
    p = vgrun(["depth=2", *TINY, f"hydra.run.dir={run}"], tmp_path)
    assert p.returncode == 1
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "traces.parquet" in lines[0] and "cli.log" in lines[0], p.stderr
    assert "Traceback" not in p.stdout and summary(run)["status"] == "failed"


@pytest.mark.long  # run by .ci/run after the fast suite
def test_two_sweeps_started_together_never_share_a_folder(tmp_path):
    # both ask for the same folder, as two sweeps started in the same microsecond would
    same = f"hydra.sweep.dir=${{vgrun.sweep_dir:null,{tmp_path}/sweep}}"
    procs = [vgrun(["-m", f"depth={d}", *TINY, same], tmp_path, wait=False) for d in (2, 3)]
    for proc in procs:
        _, errs = proc.communicate(timeout=300)
        assert proc.returncode == 0, errs
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert folders == ["sweep", "sweep-2"]
    depths = sorted(summary(next((tmp_path / f).glob("act=*")))["config"]["depth"] for f in folders)
    assert depths == [2, 3]
    for f in folders:
        assert len(list((tmp_path / f).glob("act=*"))) == 1


def test_bad_resume_is_one_line(tmp_path):
    for args in (["-m", "depth=2", f"resume={tmp_path}/nowhere"], ["depth=2", f"resume={tmp_path}"]):
        p = vgrun(args, tmp_path)
        assert p.returncode == 2
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "resume" in lines[0], p.stderr


@pytest.mark.long  # run by .ci/run after the fast suite
def test_joblib_launcher_runs_the_jobs_and_the_cache_is_shared(tmp_path):
    env = {**os.environ, "VGRUN_CACHE": str(tmp_path / "cache"), "VGRUN_CORE_LOCKS": str(tmp_path / "locks")}
    args = ["-m", "hydra/launcher=joblib", "depth=2,3", *TINY]
    p = vgrun([*args, f"hydra.sweep.dir={tmp_path}/a"], tmp_path, env)
    assert p.returncode == 0, p.stderr
    for d in (2, 3):
        s = summary(tmp_path / "a" / job_name(d))
        assert s["status"] == "completed" and s["config"]["depth"] == d
    logs = "".join((tmp_path / "a" / job_name(d) / "cli.log").read_text() for d in (2, 3))
    assert logs.count("pinned to core") == (2 if len(os.sched_getaffinity(0)) > 1 else 0), logs  # each job, own locks
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert entries  # both jobs wrote to the one cache
    p = vgrun([*args, f"hydra.sweep.dir={tmp_path}/b"], tmp_path, env)
    assert p.returncode == 0, p.stderr
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == entries  # the repeat compiled nothing new
    a = pd.read_csv(tmp_path / "a" / "sweep_summary.csv")
    b = pd.read_csv(tmp_path / "b" / "sweep_summary.csv")
    assert (a["train_loss"] == b["train_loss"]).all()  # same jobs, same numbers


def pinned_processes(log_text):
    return [int(line.rsplit("(process ", 1)[1].rstrip(")")) for line in log_text.splitlines() if "pinned to core" in line]


@pytest.mark.long  # run by .ci/run after the fast suite
def test_cores_launcher_trains_in_the_launching_process_and_in_a_worker(tmp_path):
    """hydra/launcher=cores: one process per core, the one that launched the sweep among them."""
    env = {**os.environ, "VGRUN_CACHE": str(tmp_path / "cache"), "VGRUN_CORE_LOCKS": str(tmp_path / "locks")}
    proc = vgrun(["-m", "hydra/launcher=cores", "depth=2,3,4", *TINY, f"hydra.sweep.dir={tmp_path}/s"], tmp_path, env,
                 wait=False)
    out, errs = proc.communicate(timeout=300)
    assert proc.returncode == 0, errs
    table = pd.read_csv(tmp_path / "s" / "sweep_summary.csv")
    assert list(table["depth"]) == [2, 3, 4] and (table["status"] == "completed").all()
    pids = [pinned_processes((tmp_path / "s" / job_name(d) / "cli.log").read_text()) for d in (2, 3, 4)]
    if len(os.sched_getaffinity(0)) < 2:
        assert pids == [[], [], []]  # one core: every job in this process, unpinned
        return
    assert all(len(p) == 1 for p in pids), pids  # every job pinned, once
    assert proc.pid in {p[0] for p in pids} and len({p[0] for p in pids}) == 2, (proc.pid, pids)


@pytest.mark.long  # starts a pool, kills its worker, waits for the sweep to end
def test_a_cores_worker_that_dies_fails_its_job_only(tmp_path):
    """A pool worker killed mid-job: that job is recorded failed with the reason, the others complete,
    the sweep exits 1 with its summary written."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: the cores launcher starts no worker")
    sweep = tmp_path / "s"
    proc = vgrun(["-m", "hydra/launcher=cores", "depth=2,3,4", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path, wait=False)
    # the worker's first job (its summary is written before it compiles)
    out, errs = kill_the_worker_once(proc, sweep / job_name(2) / "summary.json")
    table = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(table["status"]) == ["failed", "completed", "completed"], table
    s = summary(sweep / job_name(2))
    assert s["status"] == "failed" and "worker process" in s["error"] and s["config"]["depth"] == 2
    assert "failed" in out and "Traceback" not in out + errs


@pytest.mark.long  # starts a pool, kills its worker, waits for the sweep to end
def test_fail_fast_stops_a_cores_sweep_whose_worker_dies(tmp_path):
    """fail_fast=true: a worker dying is a failure like any other: the jobs that start after it skip themselves."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: the cores launcher starts no worker")
    sweep = tmp_path / "s"
    # jobs in order: (seed 0, width 8) to the worker, killed once it runs; (seed 0, width 512) here, long enough
    # (~6 s) to be in flight then; the seed 1 jobs wait in the queue
    proc = vgrun(["-m", "hydra/launcher=cores", "seed=0,1", "width=8,512", "depth=2", "batch_size=128", "steps=2000",
                  "chunks=1", f"hydra.sweep.dir={sweep}", "fail_fast=true"], tmp_path, wait=False)
    first = sweep / "batch_size=128,chunks=1,depth=2,seed=0,steps=2000,width=8" / "summary.json"
    out, errs = kill_the_worker_once(proc, first)
    table = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(zip(table["seed"], table["width"])) == [(0, 8), (0, 512), (1, 8), (1, 512)]
    assert list(table["status"]) == ["failed", "completed", "skipped", "skipped"], table
    assert "worker process" in table["error"].iloc[0]
    assert first.parent.name in table["error"].iloc[3]  # the skip names the failed job
    assert "Traceback" not in out + errs


def kill_the_worker_once(proc, started):
    """SIGKILL the cores sweep's one pool worker once the file `started` exists; the sweep's (stdout,
    stderr), after asserting it exits 1."""
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    workers = [pid for pid in children(proc.pid) if "popen_loky_posix" in cmdline(pid)]
    assert len(workers) == 1, [cmdline(pid) for pid in children(proc.pid)]
    os.kill(workers[0], signal.SIGKILL)
    out, errs = proc.communicate(timeout=300)
    assert proc.returncode == 1, errs
    return out, errs


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
        except OSError:
            pass
    return found


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
    except OSError:
        return ""


def test_a_joblib_worker_exits_with_its_code_and_its_log_but_without_the_teardown(tmp_path):
    """cli._worker_exit, registered after every other exit handler, runs first: it skips the
    interpreter's teardown (here: a handler registered before it), flushes the logs and exits
    with the code loky's worker script set (`exitcode` in its __main__)."""
    log = tmp_path / "job.log"
    script = f"""
import atexit, logging, sys
atexit.register(lambda: print("teardown", flush=True))
from vgrun.cli import main as cli
logging.basicConfig(filename={str(log)!r}, level=logging.INFO)
logging.getLogger("vgrun").info("the job's last line")
atexit.register(cli._worker_exit)
exitcode = 3
sys.exit(exitcode)
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 3 and "teardown" not in p.stdout, (p.returncode, p.stdout, p.stderr)
    assert "the job's last line" in log.read_text()


@pytest.mark.long  # run by .ci/run after the fast suite
def test_submitit_local_launcher(tmp_path):
    p = vgrun(["-m", "hydra/launcher=submitit_local", "depth=2,3", *TINY, f"hydra.sweep.dir={tmp_path}/s"], tmp_path)
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(tmp_path / "s" / "sweep_summary.csv")
    assert list(table["depth"]) == [2, 3] and (table["status"] == "completed").all()
    assert (tmp_path / "s" / ".submitit").is_dir()


def test_launcher_configs_compose():
    from hydra import compose, initialize_config_module

    from vgrun.cli.main import register_schema

    register_schema()
    with initialize_config_module("vgrun.conf", version_base=None):
        slurm = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
        cores = compose("config", overrides=["hydra/launcher=cores"], return_hydra_config=True).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.cpus_per_task == 1 and slurm.partition is None
    assert cores._target_.endswith("CoresLauncher") and cores.n_jobs == -1


def test_job_folder_names_stay_single_and_short():
    from vgrun.sweeps.sweep import job_dir

    assert job_dir("act=relu,depth=20") == "act=relu,depth=20"
    assert job_dir("") == "default"
    assert "/" not in job_dir("data.path=/a/b,depth=2")
    long = ",".join(f"optimizer.clip_norm{i}={i}.0" for i in range(30))
    a, b = job_dir(long), job_dir(long + "1")
    assert len(a.encode()) <= 200 and a.startswith("optimizer.clip_norm0=0.0,") and a != b


def test_setup_jax_leaves_no_thread_pinned_to_the_first_core():
    """XLA sizes its pool under a narrow mask, then every thread gets the whole machine back, or two
    processes would compute on the same core."""
    if len(os.sched_getaffinity(0)) < 2:
        return  # one core: nothing to spread over
    code = """if True:
        import os
        from vgrun.training.backend import setup as setup_jax
        from vgrun.config.schema import Config
        setup_jax(Config())
        import jax.numpy as jnp
        x = jnp.ones((64, 64)); (x @ x).block_until_ready()
        masks = {os.sched_getaffinity(int(t)) == os.sched_getaffinity(0) for t in os.listdir("/proc/self/task")}
        print(len(os.listdir("/proc/self/task")), masks)
    """
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    n, masks = p.stdout.split(" ", 1)
    assert int(n) > 1 and masks.strip() == "{True}"


def test_sweeper_composes_one_job_per_distinct_structure_and_checks_every_job(capsys):
    """hydra/sweeper=vgrun: every job of the sweep is checked (ranges included) before any runs;
    jobs differing only in plain values share one composition."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from hydra_plugins.vgrun_sweeper.sweeper import VgrunSweeper, composition_signature
    from vgrun.cli.main import register_schema
    from vgrun.config.overrides import CONF
    from vgrun.config.schema import ConfigError

    composed = []
    register_schema()

    class Loader:
        def load_sweep_config(self, config, overrides):
            composed.append(overrides)
            structural = [o for o in composition_signature(overrides) if not o.startswith("hydra")]
            with initialize_config_dir(config_dir=str(CONF), version_base=None):
                cfg = compose("config", overrides=structural)
            with open_dict(cfg):
                cfg["hydra"] = OmegaConf.create({})
            return cfg

    sweeper = VgrunSweeper(max_batch_size=None)
    sweeper.hydra_context, sweeper.config = type("Context", (), {"config_loader": Loader()})(), None
    jobs = [[f"optimizer.lr={lr}", f"seed={s}", "act=relu"] for lr in (0.01, 0.1) for s in (0, 1)]
    jobs += [["model=resmlp", "optimizer.lr=0.01", "seed=0", "act=relu"], ["hydra/launcher=cores", "seed=1"]]
    sweeper.check_jobs(jobs)
    assert composed == [jobs[0], jobs[4], jobs[5]]
    assert composition_signature(["+foo=1", "~bar", "hydra.job.name=x", "depth=3"]) == ("+foo=1", "~bar", "hydra.job.name=x")
    for bad, words in ((["depth=abc"], ("depth", "abc", "integer")), (["act=sigmod"], ("act", "sigmod", "relu")),
                       (["depth=0"], ("depth", "0", "> 0")),
                       (["steps=10", "trace_every=3"], ("trace_every", "3", "10"))):
        with pytest.raises(ConfigError) as e:
            sweeper.check_jobs([["seed=0"], bad])
        assert all(w in str(e.value) for w in words)


@pytest.mark.long
@pytest.mark.parametrize("launcher", ["basic", "vectorized"])
def test_ctrl_c_keeps_what_every_job_measured_and_the_summary(tmp_path, launcher):
    """SIGINT mid-sweep: the jobs in flight end interrupted with what they measured, the later ones
    are skipped (not started), the summary is written and marked partial, exit 130."""
    sweep = tmp_path / "sweep"
    args = ["-m", f"hydra/launcher={launcher}", "seed=0,1", "depth=2,3", "width=16", "batch_size=16",
            "steps=400000", "chunks=4000", f"hydra.sweep.dir={sweep}"]
    p = vgrun(args, tmp_path, wait=False)
    started = (lambda: list(sweep.glob("*/summary.json"))) if launcher == "basic" else \
        (lambda: (sweep / "multirun.yaml").exists())  # the vectorized launcher trains before any job folder
    deadline = time.time() + 120
    while time.time() < deadline and not started():
        time.sleep(0.1)
    time.sleep(3.0)  # into training
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    jobs = sorted(d for d in sweep.iterdir() if d.is_dir())
    statuses = {d.name: summary(d)["status"] for d in jobs}
    assert {"interrupted", "skipped"} <= set(statuses.values()) <= {"completed", "interrupted", "skipped"}, statuses
    for d in jobs:
        s = summary(d)
        if s["status"] == "interrupted":
            assert 0 < s["steps_done"] < 400000 and len(pd.read_parquet(d / "steps.parquet")) == s["steps_done"]
        else:
            assert "interrupted" in s["error"] and not (d / "steps.parquet").exists()
    assert (sweep / "sweep_summary.md").read_text().startswith("**partial**")
    assert len(pd.read_csv(sweep / "sweep_summary.csv")) == len(jobs)


def test_a_fresh_sweep_folder_is_locked_before_hydra_makes_it(tmp_path):
    from vgrun.sweeps.sweep import LOCK, lock, unlock

    folder = tmp_path / "not" / "yet"
    lock(folder)  # the callback runs before Hydra makes the sweep's folder
    assert (folder / LOCK).exists()
    unlock(folder)
    assert not (folder / LOCK).exists()
