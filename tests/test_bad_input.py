"""Bad input, in process: one line naming the value and what would be valid, the right exit code,
no traceback, and no run folder left behind. A table of commands; the companion commands and
the disk's faults after it."""

import errno
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from vgrun.config.schema import ConfigError

NO_SBATCH = shutil.which("sbatch") is None

# (command line, exit code, words the one line must hold)
TABLE = [
    # Hydra's override grammar
    (["depth==3"], 2, ["depth==3", "key=value"]),
    (["depth=[1,2"], 2, ["depth=[1,2", "key=value"]),
    (["act=sigmoid)"], 2, ["act=sigmoid)", "key=value"]),
    (["depth=5,10"], 2, ["depth", "5,10", "-m"]),
    (["init=glob(x*)"], 2, ["init", "glob(x*)", "-m"]),
    (["-m", "init=glob(nosuch*)"], 2, ["init", "glob(nosuch*)", "xavier"]),
    (["-m", "depth=glob(*)"], 2, ["depth", "glob(*)", "config group"]),
    # keys, names and types
    (["act=sigmod"], 2, ["act", "sigmod", "sigmoid", "tanh"]),
    (["init=foo"], 2, ["init", "foo", "xavier", "he"]),
    (["optimizer.lr=abc"], 2, ["optimizer.lr", "abc", "number"]),
    (["foo=1"], 2, ["foo", "depth", "width"]),
    (["+foo=1"], 2, ["foo", "depth"]),
    (["-m", "act=relu,sigmod"], 2, ["act", "sigmod"]),
    (["-m", "hydra/launcher=nosuch", "depth=2"], 2, ["hydra/launcher", "nosuch", "vectorized", "cores"]),
    # near misses: the closest valid name
    (["act=sigmiod"], 2, ["act", "sigmiod", "did you mean 'sigmoid'?", "tanh"]),
    (["detph=3"], 2, ["detph", "did you mean 'depth'?", "width"]),
    (["model=mpl"], 2, ["model", "mpl", "did you mean 'mlp'?", "resmlp"]),
    (["optimzer.lr=0.1"], 2, ["optimzer.lr", "did you mean 'optimizer.lr'?"]),
    (["optimizer.schedule=cosin"], 2, ["optimizer.schedule", "cosin", "did you mean 'cosine'?"]),
    (["experiment=he2051"], 2, ["experiment", "he2051", "did you mean 'he2015'?"]),
    (["lesion=ture"], 2, ["lesion", "ture", "did you mean 'true'?"]),
    (["-m", "hydra/launcher=cors", "depth=2"], 2, ["hydra/launcher", "cors", "did you mean 'cores'?"]),
    # shell completion: Hydra's, with its mistakes said in one line
    (["-sc", "install=tcsh"], 2, ["install", "tcsh", "bash", "zsh", "fish"]),
    (["--shell-completion", "instal=bash"], 2, ["instal=bash", "did you mean 'install=bash'?"]),
    (["-sc", "query=bash"], 2, ["COMP_LINE", "-sc install=bash"]),  # what a shell's completion runs, by hand
    # ranges, single runs
    (["depth=-3"], 2, ["depth", "-3", "> 0"]),
    (["trace_every=7"], 2, ["trace_every", "7", "divisor", "2000"]),
    (["model=rnn", "data=temporal_order", "seq_len=3"], 2, ["seq_len", "3", ">= 10", "temporal_order"]),
    (["width=100000000000"], 2, ["width", "100000000000", "memory", "GiB"]),
    (["norm=batchnorm", "bn_momentum=1.5"], 2, ["bn_momentum", "1.5", "[0, 1)"]),
    (["diagnosis.vanish_ratio=-1"], 2, ["diagnosis.vanish_ratio", "-1", "> 0"]),
    (["diagnosis.explode_ratio=0.001"], 2, ["diagnosis.explode_ratio", "0.001", "vanish_ratio"]),
    (["diagnosis.stall_frac=2"], 2, ["diagnosis.stall_frac", "2", "(0, 1]"]),
    (["model=rnn", "data=adding", "lesion=true"], 2, ["lesion", "mlp or resmlp"]),
    (["data.inputs=whiten"], 2, ["data.inputs", "whiten", "raw", "standardize"]),
    (["data.input_scale=0"], 2, ["data.input_scale", "0", "> 0"]),
    (["model=rnn", "data=adding", "data.inputs=standardize"], 2, ["data.inputs", "standardize", "adding"]),
    # a network of one's own (tests/custom_models.py)
    (["model=custom"], 2, ["model.target", "None", "import path"]),
    (["model=custom", "model.target=nosuch.module:f"], 2, ["model.target", "nosuch.module", "not found"]),
    (["model=custom", "model.target=custom_models:nosuch"], 2, ["model.target", "nosuch", "no such attribute"]),
    (["model=custom", "model.target=custom_models:two_args"], 2, ["model.target", "3 positional"]),
    (["model=custom", "model.target=custom_models:not_a_network"], 2, ["model.target", "(init, apply)", "int"]),
    (["model=custom", "model.target=custom_models:wrong_shape"], 2, ["model.target", "[128, 10]", "[128, 3]"]),
    (["model=custom", "model.target=custom_models:sigmoid_pair", "histograms=true"], 2, ["histograms", "custom"]),
    (["model=custom", "model.target=custom_models:flat_pair", "data=copy"], 2, ["data", "copy", "adding"]),
    (["optimizer.schedule=warmup_cosine", "optimizer.warmup_steps=50", "steps=20"], 2,
     ["optimizer.warmup_steps", "50", "[0, 20)"]),
    (["data=custom"], 2, ["data.target", "None", "import path"]),
    (["data.images=true"], 2, ["data.images", "model=custom"]),
    # settings the chosen model ignores
    (["model=doya", "norm=batchnorm"], 2, ["norm", "batchnorm", "doya", "ignores"]),
    (["model=doya", "act=relu"], 2, ["act", "relu", "doya"]),
    (["model=doya", "depth=5"], 2, ["depth", "5", "doya"]),
    (["model=doya", "optimizer.lr=0.1"], 2, ["optimizer.lr", "0.1", "doya"]),
    # sweeps: every job checked before the first one trains, whatever the launcher
    (["-m", "depth=5,10,20,0", "steps=10"], 2, ["depth", "0", "> 0"]),
    (["-m", "depth=range(0,2)", "steps=10"], 2, ["depth", "0", "> 0"]),
    (["-m", "steps=10,20", "trace_every=3"], 2, ["trace_every", "3", "divisor"]),
    (["-m", "hydra/launcher=vectorized", "depth=2,0", "steps=10"], 2, ["depth", "0"]),
    (["-m", "hydra/launcher=cores", "depth=2,0", "steps=10"], 2, ["depth", "0"]),
    (["-m", "model=doya", "depth=1,2"], 2, ["depth", "doya"]),
    # where the output goes
    (["hydra.run.dir={file}/run"], 2, ["hydra.run.dir", "not a folder"]),
    (["-m", "hydra.sweep.dir={file}/sweep", "depth=2,3"], 2, ["hydra.sweep.dir", "not a folder"]),
    (["resume={tmp}/nosuch"], 2, ["resume", "-m"]),
    (["-m", "resume={tmp}/nosuch", "depth=2"], 2, ["resume", "multirun.yaml"]),
]
if NO_SBATCH:
    TABLE.append((["-m", "hydra/launcher=slurm", "depth=2,3"], 2, ["hydra/launcher", "slurm", "sbatch"]))


DRIVER = """
import contextlib, io, json, logging, os, sys
from hydra.core.global_hydra import GlobalHydra
from vgrun.cli import main as cli

results = []
for case in json.loads(sys.argv[1]):
    os.chdir(case["cwd"])
    sys.argv = ["vgrun", *case["args"]]
    err, out = io.StringIO(), io.StringIO()
    GlobalHydra.instance().clear()
    code = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            cli.main()
        except SystemExit as e:
            code = e.code
        except BaseException as e:  # what the test must never see
            import traceback
            err.write("Traceback (escaped): " + "".join(traceback.format_exception(e)))
    for h in logging.getLogger().handlers[:]:  # the job's log file, which Hydra opened
        if isinstance(h, logging.FileHandler):
            logging.getLogger().removeHandler(h)
            h.close()
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every command of TABLE run by `vgrun.cli.main.main()` in one process, each from its own
    empty folder; the process is a fresh one, so Hydra's logging setup cannot touch pytest's."""
    import subprocess

    cases = []
    for i, (args, _, _) in enumerate(TABLE):
        cwd = tmp_path_factory.mktemp(f"case{i}")
        (cwd / "file").write_text("a file, not a folder\n")
        cases.append({"cwd": str(cwd), "args": [a.format(file=cwd / "file", tmp=cwd) for a in args]})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True, timeout=300,
                       env=env)  # tests/ on the path: model.target=custom_models:NAME
    assert p.returncode == 0, p.stderr
    return [(Path(c["cwd"]), r) for c, r in zip(cases, json.loads(p.stdout.splitlines()[-1]))]


@pytest.mark.parametrize("i", range(len(TABLE)), ids=[" ".join(a) for a, _, _ in TABLE])
def test_bad_input(outcomes, i):
    _, code, words = TABLE[i]
    cwd, got = outcomes[i]
    assert got["code"] == code, got["err"]
    assert "Traceback" not in got["out"] + got["err"]
    lines = [line for line in got["err"].splitlines() if line.strip()]
    assert len(lines) == 1, got["err"]
    for w in words:
        assert w in lines[0], (w, lines[0])
    leftovers = [p for p in cwd.rglob("*") if p.name in ("summary.json", ".hydra", "multirun.yaml", "cli.log", ".lock")]
    assert not leftovers, leftovers  # a rejected command leaves no run folder


def vgrun_in_process(args, cwd, monkeypatch, capsys) -> tuple[int, str, str]:
    """`vgrun ARGS` in this process, for a command that stops before Hydra starts."""
    from vgrun.cli import main as cli

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["vgrun", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_a_full_disk_is_refused_up_front(tmp_path, monkeypatch, capsys):
    """Less free space than a run needs: one line naming the disk, exit 1 (a runtime failure, not usage)."""
    from vgrun.sweeps import sweep

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 10))
    code, out, err = vgrun_in_process(["depth=3"], tmp_path, monkeypatch, capsys)
    assert code == 1 and "full" in err and str(tmp_path) in err and len(err.strip().splitlines()) == 1
    assert sweep.FREE_BYTES_NEEDED > 1 << 10


def test_a_disk_failing_mid_run_is_one_line_and_keeps_what_was_written(tmp_path):
    """The job's failure when the disk fills or turns read-only: said as such; when even the
    summary cannot be rewritten, the files already there are left as they are."""
    from vgrun.sweeps.job import Job

    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"status": "running", "steps_done": 0}))
    job = Job(run_dir=run, sweep_dir=None, multirun=False)
    message = job.failed(OSError(errno.ENOSPC, "No space left on device", str(run / "traces.parquet")), None, False)
    assert "No space left on device" in message and "traces.parquet" in message and "\n" not in message
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    import vgrun.io.store as store

    real = store.atomic_write
    store.atomic_write = full
    try:
        (run / "summary.json").write_text(json.dumps({"status": "running"}))
        message = job.failed(OSError(errno.EROFS, "Read-only file system"), None, False)
    finally:
        store.atomic_write = real
    assert "Read-only file system" in message and "could not be marked failed" in message
    assert json.loads((run / "summary.json").read_text()) == {"status": "running"}  # untouched, not half-written


def test_compare_and_report_skip_unreadable_files_and_name_them(tmp_path, capsys):
    """A truncated summary.json, traces.parquet or claims.json: that run is named and skipped, the rest compared."""
    import pandas as pd

    from vgrun.cli import compare, report
    from vgrun.io import store

    for name, loss in (("a", 0.5), ("b", 0.25), ("c", 0.125)):
        run = tmp_path / "sweep" / f"depth={name}"
        run.mkdir(parents=True)
        store.write_summary(run, {"status": "completed", "config": {"depth": loss}, "final": {"train_loss": loss}})
        pd.DataFrame({"step": [0, 0], "layer": [0, 1], "delta": [1.0, 2.0]}).to_parquet(run / "traces.parquet")
        (run / "claims.json").write_text(json.dumps({"preset": name, "passed": True, "claims": []}))
    a, b = tmp_path / "sweep" / "depth=a", tmp_path / "sweep" / "depth=b"
    (a / "summary.json").write_text('{"status": "compl')
    (b / "traces.parquet").write_bytes((b / "traces.parquet").read_bytes()[:40])
    (b / "claims.json").write_text('{"preset": ')

    compare.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert "skipped" in out and "depth=a/summary.json cannot be read" in " ".join(out.split())
    assert "depth=b/traces.parquet cannot be read" in " ".join(out.split())
    table = pd.read_csv(tmp_path / "cmp" / "sweep_summary.csv")
    assert sorted(table["depth"]) == [0.125, 0.25]  # b's summary is whole: in the table, not the figure

    frame = store.load_runs(tmp_path / "sweep")
    assert set(frame["run"]) == {str(tmp_path / "sweep" / "depth=c")}
    assert set(frame.attrs["skipped"]) == {str(a), str(b)}

    assert report.main([str(tmp_path / "sweep"), "-o", str(tmp_path / "nosuch" / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert report.main([str(tmp_path / "sweep"), "-o", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err
    assert "depth=b/claims.json cannot be read" in err and (tmp_path / "r.html").exists()


def test_override_syntax_error_is_config_error():
    from vgrun.config.overrides import check

    with pytest.raises(ConfigError) as e:
        check(["depth==3"])
    assert "\n" not in str(e.value)
