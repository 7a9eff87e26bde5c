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
    out = Path(args.out)
    if not out.parent.is_dir():
        print(f"vgrun-report: error: -o {args.out}: the folder {out.parent} does not exist; expected a file in an "
              "existing folder", file=sys.stderr)
        return 2
    folders, skipped = readable(find_reports(args.paths))
    for why in skipped:
        print(f"vgrun-report: skipped: {why}", file=sys.stderr)
    if not folders:
        print(f"vgrun-report: error: no readable claims.json under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    page = render(folders)
    try:
        atomic_write(out, lambda p: p.write_text(page))
    except OSError as e:
        print(f"vgrun-report: error: writing {out} failed: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"{args.out}: {len(folders)} reproduction(s)")
    return 0


def readable(folders: list[Path]) -> tuple[list[Path], list[str]]:
    """The folders whose claims.json is valid JSON, and why each other one was left out."""
    import json

    kept, skipped = [], []
    for f in folders:
        try:
            if not isinstance(json.loads((f / "claims.json").read_text(errors="replace")), dict):
                raise ValueError("not a JSON object")
            kept.append(f)
        except (OSError, ValueError) as e:
            skipped.append(f"{f / 'claims.json'} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]})")
    return kept, skipped


if __name__ == "__main__":
    sys.exit(main())
