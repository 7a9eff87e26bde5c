"""The comparison table on hand-written run folders: seed ranges, grouping by any key (short names
too), sums labelled, numbers never cut at any console width, swept keys carried by load_runs."""

import io

import pandas as pd
import pytest
from rich.console import Console

import vgrun
from vgrun.io import store
from vgrun.io.table import CompareError, group_table, resolve_key
from vgrun.viz.table import print_table

HUGE = 1.16789e+27  # a number a cut cell would show as `1.16…`


def _run(root, name, lr, sigma_w, loss, seeds=None):
    """A run folder: summary.json (with final_range and per-seed ratios when `seeds` lists the losses) and traces."""
    run = root / name
    run.mkdir(parents=True)
    summary = {"status": "completed", "steps_done": 4,
               "config": {"depth": 2, "optimizer": {"name": "sgd", "lr": lr},
                          "init": {"name": "normal", "sigma_w": sigma_w}, "pretrain": {"name": "none"}},
               "final": {"train_loss": loss, "train_acc": 0.5, "test_loss": HUGE, "test_acc": 0.25},
               "diagnosis": {"verdict": "exploding", "ratio_first_last": 3.0e-7, "ratio_first_last_init": 1e-5},
               "timing": {"wall_s": 1.5}}
    if seeds:
        summary["final_range"] = {"train_loss": [min(seeds), max(seeds)], "train_acc": [0.25, 0.75],
                                  "test_loss": [1.0, HUGE], "test_acc": [0.25, 0.25]}
        summary["seeds"] = [{"seed": i, "train_loss": s, "ratio_first_last": 10.0 ** -(i + 6)}
                            for i, s in enumerate(seeds)]
    store.write_summary(run, summary)
    pd.DataFrame({"step": [0, 0], "layer": [0, 1], "delta": [1.0, 2.0], "init": "normal"}).to_parquet(
        run / "traces.parquet")
    return run


@pytest.fixture
def runs(tmp_path):
    _run(tmp_path, "a", 0.1, 1.0, 2.0, seeds=[1.0, 2.0, 4.0])
    _run(tmp_path, "b", 0.1, 2.0, 8.0)
    _run(tmp_path, "c", 0.01, 2.0, 0.5)
    return tmp_path


def test_a_run_with_seeds_has_their_range_and_a_group_the_range_of_its_runs_and_seeds(runs):
    table = vgrun.load_table(runs).set_index("job")
    assert (table.loc["a", "train_loss_min"], table.loc["a", "train_loss_max"]) == (1.0, 4.0)
    assert (table.loc["a", "ratio_first_last_min"], table.loc["a", "ratio_first_last_max"]) == (1e-8, 1e-6)
    assert pd.isna(table.loc["b", "train_loss_min"])  # one seed: no range
    g = group_table(table.reset_index(), [resolve_key(table, "lr", "--by")]).set_index("optimizer.lr")
    assert g.loc[0.1, "runs"] == 2 and g.loc[0.1, "train_loss"] == 5.0  # the median of 2 and 8
    assert (g.loc[0.1, "train_loss_min"], g.loc[0.1, "train_loss_max"]) == (1.0, 8.0)  # a's seeds and b
    assert g.loc[0.1, "wall_s_sum"] == 3.0 and "wall_s" not in g.columns
    assert pd.isna(g.loc[0.01, "train_loss_min"])  # one run, one seed


def test_keys_are_named_in_full_or_by_an_unambiguous_last_part(runs):
    table = vgrun.load_table(runs)
    assert resolve_key(table, "sigma_w", "--by") == "init.sigma_w"
    assert resolve_key(table, "optimizer.lr", "--by") == "optimizer.lr"
    assert list(vgrun.load_table(runs, where={"lr": "0.01"})["job"]) == ["c"]
    with pytest.raises(CompareError, match="ambiguous.*init.name.*optimizer.name"):
        resolve_key(table, "name", "--by")
    with pytest.raises(CompareError, match="did you mean 'sigma_w'") as e:
        resolve_key(table, "sigmaw", "--by")
    assert "\n" not in str(e.value) and "expected one of" in str(e.value)


@pytest.mark.parametrize("width", [40, 80, 160])
def test_printed_numbers_are_whole_at_any_width(runs, width):
    table = vgrun.load_table(runs)
    for shown, keys, numbers in (
        (table, ["optimizer.lr", "init.sigma_w"], ["1.168e+27", "3.00e-07", "[1.00e-08,", "1.00e-06]", "[1,", "4]"]),
        (group_table(table, ["optimizer.lr"]), ["optimizer.lr"], ["1.168e+27", "[1,", "8]", "1.00e-06]", "3.0"]),
    ):
        console = Console(file=io.StringIO(), width=width)
        print_table(console, shown, keys, "runs", table)
        out = console.file.getvalue()
        assert "…" not in out and max(len(line) for line in out.splitlines()) <= width
        words = set(out.split())
        for number in numbers:  # each whole, as a word of its own
            assert number in words, (width, number, out)
    assert "(sum)" in words and "[lo, hi]" in out  # the wall time of a group: its runs' sum, said so


def test_load_runs_carries_every_key_that_differs_between_runs(runs):
    frame = vgrun.load_runs(runs)
    by_run = frame.groupby("run")[["init.sigma_w", "optimizer.lr"]].first()
    assert by_run.loc[str(runs / "a"), "init.sigma_w"] == 1.0 and by_run.loc[str(runs / "c"), "optimizer.lr"] == 0.01
    assert "depth" not in frame.columns and "init.name" not in frame.columns  # the same in every run
    assert set(frame["init"]) == {"normal"}  # the table's own column is kept
    assert "init.sigma_w" not in vgrun.load_runs(runs / "a").columns  # one run: nothing differs


def test_heatmap_axes_leave_out_keys_fixed_by_another_and_seeds():
    import pandas as pd

    from vgrun.viz.sweep import free_keys, heat_axes

    frame = pd.DataFrame({"model": ["rnn", "rnn", "lstm", "lstm"] * 2,
                          "model.rec_init": ["normal", "normal", "orthogonal", "orthogonal"] * 2,
                          "seq_len": [10, 20, 10, 20] * 2, "seed": [0] * 4 + [1] * 4})
    keys = ["model", "model.rec_init", "seq_len", "seed"]
    assert free_keys(frame, keys) == ["model", "seq_len"]  # rec_init changes only with the model
    assert heat_axes(frame, keys) == ["model", "seq_len"]
