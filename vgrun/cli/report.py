"""`vgrun-report PATH... [-o report.html]`: reproduction results as one self-contained HTML page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vgrun.io.store import atomic_write
from vgrun.viz.page import find_reports, render


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vgrun-report",
                                 description="Reproduction results as one self-contained HTML page.")
    ap.add_argument("paths", nargs="+", help="run or sweep folders, or folders holding them")
    ap.add_argument("-o", "--out", default="report.html", help="the HTML file to write (default report.html)")
    args = ap.parse_args(argv)
    folders = find_reports(args.paths)
    if not folders:
        print(f"vgrun-report: error: no claims.json under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    page = render(folders)
    atomic_write(Path(args.out), lambda p: p.write_text(page))
    print(f"{args.out}: {len(folders)} reproduction(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
