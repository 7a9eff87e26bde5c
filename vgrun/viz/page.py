"""`vgrun-report`: reproduction results as one self-contained HTML page.

    vgrun-report outputs/repro -o report.html

Every folder under the given paths that holds a `claims.json` (a judged run or sweep)
becomes a section: its claims table (claim, measured, expected, result, source) and its
plots (the sweep's own PNGs, then each job's), embedded as base64 PNGs, so the page opens
in any browser, without Python and without the run folders.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from vgrun.viz.claims import expected
from vgrun.viz.format import fmt

MAX_PLOTS = 12  # per section: a 12-job sweep shows every job, a bigger one its first 12
CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;width:100%;margin:.5em 0 1em}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top;font-size:.92em}
td.num{text-align:right;font-family:monospace}
.pass{color:#176b1a;font-weight:bold}.fail{color:#b00020;font-weight:bold}.skip{color:#a06800}
.src{color:#666}.where{color:#666;font-size:.9em}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots figure{margin:0;width:360px}
.plots img{width:100%;border:1px solid #eee}.plots figcaption{font-size:.8em;color:#555;word-break:break-all}
summary{cursor:pointer}
"""


def find_reports(paths) -> list[Path]:
    """Folders holding claims.json under the given paths, sorted by name."""
    found = set()
    for p in map(Path, paths):
        if (p / "claims.json").exists():
            found.add(p)
        elif p.is_dir():
            found.update(c.parent for c in p.rglob("claims.json"))
    return sorted(found, key=lambda f: (f.name, str(f)))


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def plots(folder: Path) -> list[Path]:
    """The folder's own PNGs (a sweep's comparison plots), then each job's, at most MAX_PLOTS."""
    own = sorted(folder.glob("*.png"))
    jobs = sorted(p for p in folder.glob("*/*.png") if not p.parent.name.startswith("."))
    return (own + jobs)[:MAX_PLOTS]


def _claim_row(c: dict) -> str:
    e = html.escape
    where = ", ".join(f"{k}={v}" for k, v in (c.get("where") or {}).items())
    if c.get("vs"):
        where += " vs " + ", ".join(f"{k}={v}" for k, v in c["vs"].items())
    measured = c.get("note") or fmt(c.get("measured"))
    exp = expected(c) if c.get("op") else "-"
    status = c.get("status", "fail")
    return (f"<tr><td>{e(c.get('name') or '')}<div class=where>{e(where)}</div></td>"
            f"<td class=num>{e(str(measured))}</td><td>{e(exp)}</td>"
            f"<td class={status}>{status.upper()}</td><td class=src>{e(c.get('source') or '')}</td></tr>")


def section(folder: Path) -> str:
    report = json.loads((folder / "claims.json").read_text())
    title = report.get("preset") or folder.name
    verdict = "pass" if report.get("passed") else "fail"
    head = (f"<h2 id='{html.escape(title)}'>{html.escape(title)} <span class={verdict}>"
            f"{'all claims hold' if verdict == 'pass' else 'a claim failed'}</span></h2>"
            f"<p class=src>{report.get('pass', 0)} pass, {report.get('fail', 0)} fail, {report.get('skip', 0)} skipped;"
            f" {report.get('n_runs', 0)} run(s); folder {html.escape(str(folder))}</p>")
    rows = "".join(_claim_row(c) for c in report.get("claims", []))
    table = ("<table><tr><th>claim</th><th>measured</th><th>expected</th><th>result</th><th>source</th></tr>"
             f"{rows}</table>")
    figs = "".join(f"<figure><img src='{_png(p)}' alt='{html.escape(p.name)}'>"
                   f"<figcaption>{html.escape(str(p.relative_to(folder)))}</figcaption></figure>" for p in plots(folder))
    return head + table + (f"<details open><summary>plots</summary><div class=plots>{figs}</div></details>" if figs else "")


def render(folders: list[Path]) -> str:
    reports = [json.loads((f / "claims.json").read_text()) for f in folders]
    n_ok = sum(bool(r.get("passed")) for r in reports)
    index = "".join(
        f"<tr><td><a href='#{html.escape(r.get('preset') or f.name)}'>{html.escape(r.get('preset') or f.name)}</a></td>"
        f"<td class={'pass' if r.get('passed') else 'fail'}>{'pass' if r.get('passed') else 'FAIL'}</td>"
        f"<td class=num>{r.get('pass', 0)} / {r.get('pass', 0) + r.get('fail', 0) + r.get('skip', 0)}</td></tr>"
        for f, r in zip(folders, reports))
    body = "".join(section(f) for f in folders)
    return ("<!doctype html><html><head><meta charset=utf-8><title>vgrun reproductions</title>"
            f"<style>{CSS}</style></head><body><h1>vgrun reproductions</h1>"
            f"<p>{n_ok} of {len(folders)} reproductions hold all their claims.</p>"
            f"<table><tr><th>reproduction</th><th>result</th><th>claims passing</th></tr>{index}</table>"
            f"{body}</body></html>\n")
