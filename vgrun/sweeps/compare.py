"""The comparison of many runs, printed and written: the table of `vgrun.io.table` and its plots."""

from __future__ import annotations

from pathlib import Path

from vgrun.io.table import group_table, swept_keys


def report(console, frame, out: Path, title: str, by: list[str] | None = None, partial: bool = False) -> None:
    """Print the table and write sweep_summary.csv/.md and the plots into `out`; partial: the sweep
    was interrupted (said at the top of sweep_summary.md)."""
    from vgrun.viz import sweep as sweep_plots
    from vgrun.viz.table import print_table, write_tables

    out.mkdir(parents=True, exist_ok=True)
    swept = swept_keys(frame)
    shown = group_table(frame, by) if by else frame
    write_tables(out, frame, shown if by else None, swept, partial)
    print_table(console, shown, by or swept, title, frame)
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
