"""`vgrun-compare PATH... [--where key=value ...] [--by key ...] [--out DIR]`: compare runs and sweeps."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from vgrun.io.table import CompareError, load_table
from vgrun.sweeps.compare import report


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise CompareError(message)


def main(argv=None) -> None:
    from rich.console import Console

    parser = _Parser(prog="vgrun-compare", description="Compare vgrun runs and sweeps: a table and plots.")
    parser.add_argument("paths", nargs="+", help="run folders, sweep folders or glob patterns")
    parser.add_argument("--where", nargs="+", default=[], metavar="KEY=VALUE", help="keep runs whose config matches")
    parser.add_argument("--by", nargs="+", default=[], metavar="KEY", help="group runs by these config keys")
    parser.add_argument("--out", type=Path, default=None, help="folder for the table and plots")
    err = Console(stderr=True)
    try:
        args = parser.parse_args(argv)
        where = {}
        for w in args.where:
            if "=" not in w:
                raise CompareError(f"--where {w!r}: expected key=value")
            k, v = w.split("=", 1)
            where[k] = v
        frame = load_table(args.paths, where, args.by)
        out = args.out or Path("outputs") / "compare" / datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
        width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160  # piped: COLUMNS, or 160
        title = f"{len(frame)} run" + ("s" if len(frame) != 1 else "")
        report(Console(width=width), frame, out, title=title, by=args.by)
    except CompareError as e:
        err.print(f"[bold red]vgrun-compare: error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)

