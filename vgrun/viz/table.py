"""The comparison table, printed (rich) and written (sweep_summary.csv, sweep_summary.md, atomically).

The csv holds every column of `compare.load_table` (a row per run); the markdown holds
what is printed: the swept keys (or the groups of `--by`), status, final metrics, the
first/last gradient ratio, the verdict and the wall time, then the failed jobs with
their error and log path.
"""

from __future__ import annotations

import math
from pathlib import Path

from vgrun.io.table import METRICS, RESULT_COLUMNS
from vgrun.io.store import atomic_write
from vgrun.viz.format import fmt, percent

HEADERS = {"train_loss": "train loss", "train_acc": "train acc", "test_loss": "held-out loss",
           "test_acc": "held-out acc", "ratio_first_last_init": "|δ| first/last, step 0",
           "ratio_first_last": "median over training", "wall_s": "wall s", "runs": "runs"}
COLORS = {"vanishing": "red", "exploding": "magenta", "healthy": "green", "not learning": "yellow", "failed": "bold red",
          "diverged": "magenta", "skipped": "yellow", "interrupted": "yellow", "running": "yellow", "killed": "bold red"}


SPECS = {"ratio_first_last_init": ".2e", "ratio_first_last": ".2e", "train_loss": ".4g", "test_loss": ".4g", "wall_s": ".1f"}


def _fmt(col: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if col in ("train_acc", "test_acc"):
        return percent(v, missing="-")
    return fmt(v, SPECS[col]) if col in SPECS else str(v)


def _columns(shown, keys: list[str]) -> list[str]:
    keys = keys or ["job"]
    extra = ["runs"] if "runs" in shown.columns else []
    ratios = ["ratio_first_last_init"] if "ratio_first_last_init" in shown.columns else []
    return [*keys, *extra, "status", *METRICS, *ratios, "ratio_first_last", "verdict", "wall_s"]


def _problems(frame) -> list[tuple[str, str, str, str]]:
    """(status, job, error, log) of every failed or skipped run."""
    bad = frame[frame["status"].isin(["failed", "skipped"])]
    return [(r.status, r.job, r.error or "", r.log or "") for r in bad.itertuples()]


def _fixed(frame, keys: list[str]) -> str:
    """The overrides every run shares: the caption of the table."""
    common = None
    for ov in frame["overrides"]:
        items = {o for o in ov.split(",") if o}
        common = items if common is None else common & items
    return ", ".join(sorted(o for o in common or () if o.split("=", 1)[0] not in keys))


def print_table(console, shown, keys: list[str], title: str, frame) -> None:
    from rich import box
    from rich.table import Table

    fixed = _fixed(frame, keys)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD,
                  caption=("every run: " + fixed) if fixed else None, caption_justify="left")
    cols = _columns(shown, keys)
    for c in cols:
        table.add_column(HEADERS.get(c, c), justify="left" if c in (*keys, "status", "verdict", "job") else "right")
    for row in shown.to_dict("records"):
        cells = []
        for c in cols:
            text = _fmt(c, row.get(c))
            color = COLORS.get(text) if c in ("status", "verdict") else None
            cells.append(f"[{color}]{text}[/]" if color else text)
        table.add_row(*cells)
    console.print(table)
    for status, job, error, log in _problems(frame):
        console.print(f"[{COLORS[status]}]{status}[/] {job}: {error}" + (f"  (log: {log})" if log else ""),
                      highlight=False, soft_wrap=True)


def _markdown(shown, cols: list[str]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731  (a one-liner)
    lines = ["| " + " | ".join(esc(HEADERS.get(c, c)) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in shown.to_dict("records"):
        lines.append("| " + " | ".join(esc(_fmt(c, row.get(c))) for c in cols) + " |")
    return "\n".join(lines)


def write_tables(out: Path, frame, grouped, keys: list[str], partial: bool = False) -> None:
    """sweep_summary.csv (every run, every column) and sweep_summary.md (the printed table and the failures;
    partial: headed as the table of an interrupted sweep)."""
    first = ["job", *keys, *RESULT_COLUMNS, "overrides", "run"]
    ordered = [c for c in dict.fromkeys(first) if c in frame.columns]
    csv = frame[ordered + [c for c in frame.columns if c not in ordered]]
    atomic_write(out / "sweep_summary.csv", lambda p: csv.to_csv(p, index=False))
    text = []
    if partial:
        text += ["**partial**: the sweep was interrupted; interrupted jobs hold what they measured, skipped ones "
                 "did not start (`resume=` finishes them)", ""]
    if grouped is not None:
        text += ["## groups", "", _markdown(grouped, _columns(grouped, keys)), "", "## runs", ""]
    text.append(_markdown(frame, _columns(frame, swept_or_job(frame, grouped, keys))))
    problems = _problems(frame)
    if problems:
        text += ["", "## failed or skipped", ""]
        for status, job, error, log in problems:
            text.append(f"- {status} `{job}`: {error}" + (f" (log: `{log}`)" if log else ""))
    atomic_write(out / "sweep_summary.md", lambda p: p.write_text("\n".join(text) + "\n"))


def swept_or_job(frame, grouped, keys: list[str]) -> list[str]:
    """Per-run columns of the markdown: with groups, the run's job name as well as the group keys."""
    return ["job", *keys] if grouped is not None else keys
