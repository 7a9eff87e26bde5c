"""Claims in words and as a table."""

from __future__ import annotations

from vgrun.science.claims import OPS
from vgrun.viz.format import fmt


def expected(c: dict) -> str:
    """The claim's test in words: '< 0.5', '≈ 1 ± 10%', 'in [0.1, 10]'."""
    op, t = c["op"], c.get("threshold")
    if op == "approx":
        tol = f"± {c['rel']:.0%}" if c.get("rel") is not None else f"± {fmt(c.get('abs'))}"
        return f"≈ {fmt(t)} {tol}"
    if op == "between" and isinstance(t, list):
        return f"in [{fmt(t[0])}, {fmt(t[1])}]"
    return f"{op} {fmt(t)}"


def table(report: dict, title: str):
    from rich.table import Table

    style = {"pass": "[bold green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}
    t = Table(title=title, title_justify="left", show_lines=False)
    for col, kw in (("claim", {"ratio": 3}), ("measured", {"justify": "right"}), ("expected", {}),
                    ("result", {}), ("source", {"ratio": 2, "style": "dim"})):
        t.add_column(col, overflow="fold", **kw)
    for c in report["claims"]:
        measured = fmt(c.get("measured")) if c.get("note") is None else c["note"]
        where = ", ".join(f"{k}={v}" for k, v in (c.get("where") or {}).items())
        name = c["name"] + (f" [dim]({where})[/]" if where else "")
        t.add_row(name, measured, expected(c) if c.get("op") in OPS else "-", style[c["status"]], c.get("source") or "")
    return t
