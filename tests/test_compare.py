"""vgrun-compare and vgrun.load_table on two real sweeps; the seed band of the comparison plots."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import vgrun
from vgrun.viz import sweep as sweep_plots
from vgrun.io.table import CompareError, group_table

TINY = ["width=8", "batch_size=16", "steps=20", "chunks=1"]


def compare(args, cwd):
    """The vgrun-compare console script's entry point, in a subprocess (as installed: vgrun.cli.compare:main)."""
    code = "import sys; from vgrun.cli.compare import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Two sweeps (tanh and relu, depth 2 and 3), run at the same time."""
    root = tmp_path_factory.mktemp("sweeps")
    procs = [subprocess.Popen([sys.executable, "-m", "vgrun.cli.main", "-m", "depth=2,3", f"act={act}", *TINY,
                               f"hydra.sweep.dir={root / act}"], cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for act in ("tanh", "relu")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    return root


def test_load_table_has_a_row_per_run_with_its_results(sweeps):
    table = vgrun.load_table([sweeps / "tanh", sweeps / "relu"])
    assert len(table) == 4 and set(table["act"]) == {"tanh", "relu"} and set(table["depth"]) == {2, 3}
    for row in table.to_dict("records"):
        s = json.loads((sweeps / row["act"] / row["job"] / "summary.json").read_text())
        assert row["status"] == s["status"] == "completed"
        assert row["test_acc"] == s["final"]["test_acc"] and row["verdict"] == s["diagnosis"]["verdict"]
        assert row["ratio_first_last"] == s["diagnosis"]["ratio_first_last"]
        assert row["init"] == row["init.name"] == "xavier" and row["optimizer.lr"] == 0.03
    assert list(vgrun.load_table(sweeps / "*", where={"depth": "3"})["depth"]) == [3, 3]  # a glob, a filter


def test_compare_cli_filters_groups_and_writes_the_table_and_plots(sweeps, tmp_path):
    out = tmp_path / "cmp"
    p = compare([str(sweeps / "tanh"), str(sweeps / "relu"), "--where", "depth=3", "--by", "act", "lr",
                 "--out", str(out)], tmp_path)
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(out / "sweep_summary.csv")
    assert len(table) == 2 and (table["depth"] == 3).all() and set(table["act"]) == {"tanh", "relu"}
    md = (out / "sweep_summary.md").read_text()
    assert "## groups" in md and "relu" in md and "tanh" in md
    groups = md.split("## runs")[0]
    assert "| act | optimizer.lr | runs |" in groups and "wall s (sum)" in groups  # `lr`: optimizer.lr
    assert "| relu | 0.03 | 1 |" in groups and "…" not in p.stdout
    for png in ("sweep_gradients.png", "sweep_ratio.png"):
        assert (out / png).stat().st_size > 10_000
    assert "relu" in p.stdout and "completed" in p.stdout


@pytest.mark.parametrize("args,words", [
    (["nowhere"], ["nowhere", "no runs"]),
    (["{tanh}", "--where", "colour=red"], ["colour", "depth", "act"]),
    (["{tanh}", "--by", "dept"], ["'dept'", "did you mean 'depth'", "expected one of"]),
    (["{tanh}", "--where", "depth"], ["depth", "key=value"]),
    ([], ["paths"]),
])
def test_bad_path_or_key_is_one_line(sweeps, tmp_path, args, words):
    p = compare([a.format(tanh=sweeps / "tanh") for a in args], tmp_path)
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in lines[0]


def test_group_table_takes_medians_the_geometric_median_ratio_ranges_and_the_wall_time_sum():
    frame = pd.DataFrame({
        "act": ["a", "a", "a", "b"], "status": ["completed"] * 3 + ["diverged"],
        "train_loss": [1.0, 2.0, 9.0, 4.0], "train_acc": [0.1, 0.2, 0.3, 0.4], "test_loss": [1.0] * 4,
        "test_acc": [0.5] * 4, "ratio_first_last": [1e-4, 1e-2, 1.0, None], "verdict": ["vanishing"] * 3 + [None],
        "wall_s": [1.0, 2.0, 3.0, 4.0],
    })
    g = group_table(frame, ["act"]).set_index("act")
    assert g.loc["a", "runs"] == 3 and g.loc["a", "train_loss"] == 2.0
    assert g.loc["a", "ratio_first_last"] == pytest.approx(1e-2) and g.loc["a", "wall_s_sum"] == 6.0
    assert (g.loc["a", "train_loss_min"], g.loc["a", "train_loss_max"]) == (1.0, 9.0)
    assert (g.loc["a", "ratio_first_last_min"], g.loc["a", "ratio_first_last_max"]) == (1e-4, 1.0)
    assert g.loc["b", "status"] == "diverged" and np.isnan(g.loc["b", "ratio_first_last"])
    assert np.isnan(g.loc["b", "train_loss_min"])  # one run: no range


def test_a_run_with_several_seeds_draws_its_median_and_spread(tmp_path):
    """Traces with a seed column (seeds=N): one curve per seed, the line is their median, the band min..max."""
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": step, "layer": layer, "seed": seed, "delta": (seed + 1) * 10.0 ** -layer * (1 + step)}
            for seed in range(3) for step in (0, 5) for layer in range(4)]
    pd.DataFrame(rows).to_parquet(run / "traces.parquet")
    curves, recurrent = sweep_plots._curves(str(run), None)
    assert not recurrent and sorted(curves) == [(s, w) for s in range(3) for w in ("end", "init")]
    x, med, lo, hi = sweep_plots._band([curves[(s, "end")] for s in range(3)])
    assert list(x) == [0, 1, 2, 3]
    np.testing.assert_allclose(med, 2 * 6.0 * 10.0 ** -x)
    np.testing.assert_allclose(lo, 1 * 6.0 * 10.0 ** -x)
    np.testing.assert_allclose(hi, 3 * 6.0 * 10.0 ** -x)
    frame = pd.DataFrame([{"run": str(run), "job": "j", "n_seeds": 3, "ratio_first_last": 1e-3, "depth": 3}])
    written = sweep_plots.draw(tmp_path, frame, ["depth"])
    assert [p.name for p in written] == ["sweep_gradients.png", "sweep_ratio.png"]


def test_load_table_raises_one_clear_error(tmp_path):
    with pytest.raises(CompareError, match="no runs"):
        vgrun.load_table(tmp_path)
