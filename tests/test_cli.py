"""The command line end to end, in subprocesses, from a scratch working directory."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

import vgrun

SMALL = ["depth=3", "width=16", "batch_size=16", "steps=20", "chunks=2"]


def vgrun_cmd(args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "vgrun.cli.main", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, **kw)


def test_run_writes_a_complete_run_folder_under_the_working_directory(tmp_path):
    p = vgrun_cmd([*SMALL, "act=sigmoid"], tmp_path)
    assert p.returncode == 0, p.stderr
    (run,) = {f.parent for f in (tmp_path / "outputs").rglob("summary.json")}  # the default folder: ./outputs/...
    for name in ("summary.json", "report.txt", "traces.parquet", "steps.parquet", "gradient_flow.png",
                 ".hydra/config.yaml"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps_done"] == 20
    d = summary["diagnosis"]
    assert d["verdict"] in ("vanishing", "healthy", "exploding", "not learning")
    assert d["headline"].split(" (")[0] in " ".join(p.stdout.split())  # the headline is printed
    assert d["headline"].split(" (")[0] in " ".join((run / "report.txt").read_text().split())
    env = summary["environment"]
    assert env["versions"]["jax"] == jax.__version__ and env["backend"] == "cpu"
    assert env["command"] == "vgrun " + " ".join([*SMALL, "act=sigmoid"])
    config = summary["config"]  # what applies to an MLP on the digits, with the digits' real sizes
    assert "doya" not in config and "seq_len" not in config and "forget_bias" not in config["model"]
    assert config["data"] == {"name": "digits", "test_frac": 0.25, "inputs": "raw", "input_scale": 1.0, "images": False,
                              "n_in": 64, "n_out": 10}
    assert summary["timing"]["compile_s"] > 0
    traces = vgrun.load_run(run)
    assert len(traces) == 20 * 4 and {"step", "layer", "delta", "grad_w", "act", "depth", "run"} <= set(traces)
    assert (traces["act"] == "sigmoid").all()
    steps = vgrun.load_run(run, "steps")
    assert len(steps) == 20 and steps["loss"].notna().all()
    assert "Gradient norms per layer" in p.stdout
    assert str(run) in p.stdout.replace("\n", "")
    assert vgrun.load_runs(tmp_path / "outputs")["run"].nunique() == 1


def test_bad_input_from_the_console_script(tmp_path):
    """The table of bad inputs runs in process (tests/test_bad_input.py); here one through the real entry point."""
    p = vgrun_cmd(["act=sigmod"], tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr + p.stdout
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and all(w in lines[0] for w in ("act", "sigmod", "sigmoid")), p.stderr
    assert not (tmp_path / "outputs").exists()
    p = vgrun_cmd(["trace_every=7"], tmp_path)  # rejected after Hydra made the run folder: removed again
    assert p.returncode == 2 and "trace_every=7" in p.stderr and "Traceback" not in p.stderr
    assert not [f for f in tmp_path.rglob("*") if f.is_file()]


def test_divergence_is_a_result(tmp_path):
    p = vgrun_cmd(["act=linear", "depth=6", "width=16", "optimizer.lr=50", "steps=200", "chunks=10",
                   f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["diagnosis"]["nonfinite"]["loss"] > 0
    assert len(vgrun.load_run(tmp_path / "run", "steps")) == summary["steps_done"] < 200


def test_sigterm_leaves_a_valid_partial_run(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "vgrun.cli.main", *SMALL[:3], "steps=200000", "chunks=2000",
                             f"hydra.run.dir={run}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while not (run / "summary.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["process"]["pid"] == proc.pid
    assert 0 < summary["steps_done"] < 200000
    assert len(vgrun.load_run(run, "steps")) == summary["steps_done"]
    assert not [f for f in os.listdir(run) if ".tmp-" in f]  # no half-written files left


@pytest.mark.long
def test_sigterm_stops_doya_s_analysis(tmp_path):
    """model=doya honours SIGTERM between the parts of its analysis: interrupted, exit 130."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "vgrun.cli.main", "model=doya", "doya.horizon=40000",
                             "doya.n_b=20001", f"hydra.run.dir={run}"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "summary.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "of 4" in summary["error"]
    assert not (run / "doya.png").exists()


def test_console_script_is_installed():
    import shutil

    assert shutil.which("vgrun"), "pip install . should put `vgrun` on PATH"


def test_a_running_record_whose_process_is_gone_reads_as_killed(tmp_path):
    """summary.json says "running" while its process lives; once the process is gone (SIGKILL, out
    of memory) every reader reports it killed: by its pid and host, and by its start time where
    the pid was given to another process since."""
    import socket

    from vgrun.io import store

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = store.process()
    cases = {"alive": me, "dead": {**me, "pid": dead.pid, "start": None},
             "reused": {**me, "start": me["start"] - 1} if me["start"] is not None else me,
             "elsewhere": {**me, "pid": dead.pid, "host": socket.gethostname() + "-other"}}
    for name, proc in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"status": "running", "process": proc}))
    status = {name: store.load_summary(tmp_path / name)["status"] for name in cases}
    assert status["alive"] == "running" and status["elsewhere"] == "running"
    assert status["dead"] == "killed" and "is gone" in store.load_summary(tmp_path / "dead")["killed"]
    if me["start"] is not None:  # Linux: the pid now belongs to a process started at another time
        assert status["reused"] == "killed"
    table = vgrun.load_table(tmp_path)
    assert dict(zip(table["job"], table["status"])) == status


def test_version_is_vgrun_s(tmp_path):
    from importlib import metadata

    p = vgrun_cmd(["--version"], tmp_path)
    assert p.returncode == 0 and p.stdout.startswith(f"vgrun {metadata.version('vgrun')} (jax {jax.__version__}")


def test_a_preset_without_the_plus():
    assert vgrun.compose(["experiment=he2015"]) == vgrun.compose(preset="he2015")
    assert vgrun.compose(["experiment=he2015"]).depth == 30
