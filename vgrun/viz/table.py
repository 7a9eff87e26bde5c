"""The comparison table, printed (rich) and written (sweep_summary.csv, sweep_summary.md, atomically).

The csv holds every column of `compare.load_table` (a row per run); the markdown holds
what is printed: the swept keys (or the groups of `--by`), status, final metrics, the
first/last gradient ratio, the verdict and the wall time (summed over a group's runs), then
the failed jobs with their error and log path. A median over seeds or over a group's runs
is followed by its range, `2.31 [2.22, 2.41]`.

Numbers are printed whole: a table too wide for the console wraps its headers and words,
puts a range under its median, and if that is not enough is printed in parts, each
beginning with the same key columns.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.cells import cell_len

from vgrun.io.store import atomic_write
from vgrun.io.table import METRICS, RESULT_COLUMNS
from vgrun.viz.format import fmt, percent

HEADERS = {"train_loss": "train loss", "train_acc": "train acc", "test_loss": "held-out loss",
           "test_acc": "held-out acc", "ratio_first_last_init": "|δ| first/last, step 0",
           "ratio_first_last": "median over training", "wall_s": "wall s", "wall_s_sum": "wall s (sum)",
           "runs": "runs"}
COLORS = {"vanishing": "red", "exploding": "magenta", "healthy": "green", "not learning": "yellow", "failed": "bold red",
          "diverged": "magenta", "skipped": "yellow", "interrupted": "yellow", "running": "yellow", "killed": "bold red"}
SPECS = {"ratio_first_last_init": ".2e", "ratio_first_last": ".2e", "train_loss": ".4g", "test_loss": ".4g",
         "wall_s": ".1f", "wall_s_sum": ".1f"}
RANGED = (*METRICS, "ratio_first_last_init", "ratio_first_last")  # columns whose cells may carry a range
WORDS = ("status", "verdict")  # columns of words: they may wrap between words


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _fmt(col: str, v) -> str:
    if _missing(v):
        return "-"
    if col in ("train_acc", "test_acc"):
        return percent(v, missing="-")
    return fmt(v, SPECS[col]) if col in SPECS else str(v)


def _cell(col: str, row: dict) -> tuple[str, str]:
    """(the value, its range `[min, max]` or "" where the row has none)."""
    value, lo, hi = row.get(col), row.get(f"{col}_min"), row.get(f"{col}_max")
    if col not in RANGED or _missing(value) or _missing(lo) or _missing(hi):
        return _fmt(col, value), ""
    return _fmt(col, value), f"[{_fmt(col, lo)}, {_fmt(col, hi)}]"


def _has_ranges(shown) -> bool:
    return any(_cell(c, row)[1] for row in shown.to_dict("records") for c in RANGED)


def _columns(shown, keys: list[str]) -> list[str]:
    keys = keys or ["job"]
    extra = ["runs"] if "runs" in shown.columns else []
    ratios = ["ratio_first_last_init"] if "ratio_first_last_init" in shown.columns else []
    wall = ["wall_s_sum"] if "wall_s_sum" in shown.columns else ["wall_s"]
    return [*keys, *extra, "status", *METRICS, *ratios, "ratio_first_last", "verdict", *wall]


def _problems(frame) -> list[tuple[str, str, str, str]]:
    """(status, job, error, log) of every failed or skipped run."""
    bad = frame[frame["status"].isin(["failed", "skipped"])]
    return [(r.status, r.job, r.error or "", r.log or "") for r in bad.itertuples()]


def _fixed(frame, keys: list[str]) -> str:
    """The overrides every run shares: the line under the table."""
    common = None
    for ov in frame["overrides"]:
        items = {o for o in ov.split(",") if o}
        common = items if common is None else common & items
    return ", ".join(sorted(o for o in common or () if o.split("=", 1)[0] not in keys))


def _range_note(grouped: bool) -> str:
    if grouped:
        return "m [lo, hi]: the median of the group's runs and, in brackets, the range over those runs and their seeds"
    return "m [lo, hi]: the median over the run's seeds and, in brackets, their range"


def _longest_word(text: str) -> int:
    return max((cell_len(w) for w in text.split()), default=0)


def _widths(col: str, header: str, cells: list[tuple[str, str]], label: bool) -> tuple[int, int]:
    """(natural, narrowest) width of a column's content: a range may go under its median, words and
    headers may wrap between words, and a number (a label too) is never broken."""
    natural = max([cell_len(header), *(cell_len(f"{v} {r}" if r else v) for v, r in cells)])
    narrow = [_longest_word(header)]
    for v, r in cells:
        if col in WORDS and not label:
            narrow.append(_longest_word(v))
        else:
            narrow.append(max(cell_len(v), cell_len(r)))
    return natural, max(narrow)


def _fit(natural: list[int], floors: list[list[int]], room: int) -> list[int]:
    """Column widths that sum to at most `room` where the floors allow: the widest column shrinks
    first, down to the first floor, then down to the next (the labels' folded widths)."""
    widths = list(natural)
    for floor in floors:
        while sum(widths) > room:
            slack = [i for i, (w, n) in enumerate(zip(widths, floor)) if w > n]
            if not slack:
                break
            widths[max(slack, key=lambda i: widths[i])] -= 1
    return widths


def _parts(narrow: dict, keys: list[str], values: list[str], width: int) -> list[list[str]]:
    """The value columns split into as few tables as fit `width` beside the key columns (3 characters
    of padding and rule per column, 1 at the edge), as even in width as that allows."""
    def split(cap: int) -> list[list[str]]:
        parts, part = [], []
        for c in values:
            if part and sum(narrow[k] + 3 for k in (*keys, *part, c)) + 1 > cap:
                parts.append(part)
                part = []
            part.append(c)
        return parts + [part]

    fewest, least = len(split(width)), sum(narrow[k] + 3 for k in keys) + 1
    return next(split(cap) for cap in range(least, max(width, least) + 1) if len(split(cap)) == fewest)


def print_table(console, shown, keys: list[str], title: str, frame) -> None:
    """Print `shown` (a row per run, or per group with a `runs` column) under `title`: `keys` first,
    then the results; a table too wide for the console in parts (see the module docstring)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cols = _columns(shown, keys)
    labels = cols[:len(keys or ["job"])]
    records = shown.to_dict("records")
    cells = {c: [_cell(c, row) for row in records] for c in cols}
    sizes = {c: _widths(c, HEADERS.get(c, c), cells[c], c in labels) for c in cols}
    natural, narrow = {c: s[0] for c, s in sizes.items()}, {c: s[1] for c, s in sizes.items()}
    share = max(8, console.width // 2 // len(labels) - 3)  # a label wider folds: half the console is the results'
    folded = {c: min(n, share) if c in labels else n for c, n in narrow.items()}
    parts = _parts(folded, labels, [c for c in cols if c not in labels], console.width)
    for i, part in enumerate(parts):
        show = [*labels, *part]
        room = console.width - 3 * len(show) - 1
        widths = dict(zip(show, _fit([natural[c] for c in show], [[narrow[c] for c in show],
                                     [folded[c] for c in show]], room)))
        table = Table(title=title if i == 0 else None, title_justify="left", box=box.SIMPLE_HEAD)
        for c in show:  # fold, never an ellipsis: only a label wider than its share is folded, never a number
            table.add_column(HEADERS.get(c, c), justify="left" if c in (*labels, *WORDS) else "right",
                             width=widths[c], overflow="fold")
        for r in range(len(records)):
            row = []
            for c in show:
                value, spread = cells[c][r]
                inline = f"{value} {spread}" if spread else value
                text = inline if not spread or cell_len(inline) <= widths[c] else f"{value}\n{spread}"  # range below
                row.append(Text(text, style=COLORS.get(value, "") if c in WORDS else ""))
            table.add_row(*row)
        console.print(table)
    fixed = _fixed(frame, keys)
    if fixed:
        console.print("every run: " + fixed, markup=False, highlight=False)
    if _has_ranges(shown):
        console.print(_range_note("runs" in shown.columns), markup=False, highlight=False)
    for status, job, error, log in _problems(frame):
        console.print(f"[{COLORS[status]}]{status}[/] {job}: {error}" + (f"  (log: {log})" if log else ""),
                      highlight=False, soft_wrap=True)


def _markdown(shown, cols: list[str]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731  (a one-liner)
    lines = ["| " + " | ".join(esc(HEADERS.get(c, c)) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in shown.to_dict("records"):
        lines.append("| " + " | ".join(esc(" ".join(p for p in _cell(c, row) if p)) for c in cols) + " |")
    return "\n".join(lines)


def write_tables(out: Path, frame, keys: list[str], grouped=None, by: list[str] | None = None,
                 partial: bool = False) -> None:
    """sweep_summary.csv (every run, every column) and sweep_summary.md (the printed tables: `grouped`
    by `by`'s keys where given, then every run by its swept `keys`, then the failures; partial:
    headed as the table of an interrupted sweep)."""
    first = ["job", *keys, *RESULT_COLUMNS, "overrides", "run"]
    ordered = [c for c in dict.fromkeys(first) if c in frame.columns]
    csv = frame[ordered + [c for c in frame.columns if c not in ordered]]
    atomic_write(out / "sweep_summary.csv", lambda p: csv.to_csv(p, index=False))
    text = []
    if partial:
        text += ["**partial**: the sweep was interrupted; interrupted jobs hold what they measured, skipped ones "
                 "did not start (`resume=` finishes them)", ""]
    if grouped is not None:
        text += ["## groups", "", _markdown(grouped, _columns(grouped, by or [])), ""]
        text += [_range_note(True), ""] if _has_ranges(grouped) else []
        text += ["## runs", ""]
    text.append(_markdown(frame, _columns(frame, ["job", *keys] if grouped is not None else keys)))
    text += ["", _range_note(False)] if _has_ranges(frame) else []
    problems = _problems(frame)
    if problems:
        text += ["", "## failed or skipped", ""]
        for status, job, error, log in problems:
            text.append(f"- {status} `{job}`: {error}" + (f" (log: `{log}`)" if log else ""))
    atomic_write(out / "sweep_summary.md", lambda p: p.write_text("\n".join(text) + "\n"))
