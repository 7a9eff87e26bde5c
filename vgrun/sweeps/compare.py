"""The comparison of many runs, printed and written: the table of `vgrun.io.table` and its plots."""

from __future__ import annotations

from pathlib import Path

from vgrun.io.table import group_table, resolve_key, swept_keys


def report(console, frame, out: Path, title: str, by: list[str] | None = None, partial: bool = False) -> None:
    """Print the table and write sweep_summary.csv/.md and the plots into `out`; `by`: config keys to
    group by (`optimizer.lr`, or `lr` where unambiguous; a bad one raises CompareError before anything
    is written); partial: the sweep was interrupted (said at the top of sweep_summary.md)."""
    from vgrun.viz import sweep as sweep_plots
    from vgrun.viz.table import print_table, write_tables

    by = list(dict.fromkeys(resolve_key(frame, k, "--by") for k in by or ()))
    out.mkdir(parents=True, exist_ok=True)
    swept = swept_keys(frame)
    grouped = group_table(frame, by) if by else None
    write_tables(out, frame, swept, grouped, by, partial)
    print_table(console, grouped if by else frame, by or swept, title, frame)
    written = sweep_plots.draw(out, frame, by or swept, by=by)
    for why in unreadable(frame):
        console.print(f"[bold yellow]skipped:[/] {why}", highlight=False, soft_wrap=True)
    console.print(f"files: [bold]{out}[/] (sweep_summary.csv, sweep_summary.md"
                  + "".join(f", {p.name}" for p in written) + ")", highlight=False, soft_wrap=True)  # paths stay whole


def unreadable(frame) -> list[str]:
    """The runs left out for a file that cannot be read: a summary (not in the table), or a table
    of a finished run (in the table, not in the figures)."""
    from vgrun.io.store import intact

    found = list(frame.attrs.get("skipped", {}).values())
    for run, status in zip(frame["run"], frame["status"]):
        if status in ("completed", "diverged", "interrupted") and (Path(run) / "traces.parquet").exists():
            why = intact(run, tables=("traces",))
            if why:
                found.append(why)
    return found
