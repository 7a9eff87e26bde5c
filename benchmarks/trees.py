"""Is one tree slower than another? The same jobs through each tree's `vgrun`, taking turns.

    python benchmarks/trees.py --old /path/to/old-venv/bin/python --new python [--rounds 3]

Each round runs every job once with each interpreter (old first in odd rounds, new first in
even ones), each in a fresh process with a warm compilation cache of its own (one untimed
run first), and reads steps/s (training after compilation) and the process's wall time.
The table shows medians and new / old.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from same_results import ENTRY

JOBS = {  # the default job's network and the recurrent one of bench_rnn.py
    "mlp depth 20 sigmoid": ["model=mlp", "depth=20", "act=sigmoid"],
    "lstm adding T=100": ["model=lstm", "data=adding", "seq_len=100", "steps=300", "optimizer=adam",
                          "optimizer.lr=0.001"],
}


def once(python: str, args: list[str], folder: Path, cache: Path) -> tuple[float, float]:
    """(steps/s, wall s) of one run."""
    t0 = time.perf_counter()
    subprocess.run([python, "-c", ENTRY, *args, f"hydra.run.dir={folder}"], check=True, capture_output=True,
                   env={**os.environ, "VGRUN_CACHE": str(cache)})
    wall = time.perf_counter() - t0
    summary = json.loads((folder / "summary.json").read_text())
    return summary["timing"]["steps_per_s"], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    trees = {"old": args.old, "new": args.new}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, python in trees.items():  # warm each tree's cache: compilation is not what is compared
            for j, job in enumerate(JOBS.values()):
                once(python, job, tmp / f"warm-{name}-{j}", tmp / f"cache-{name}")
        got = {(t, j): [] for t in trees for j in JOBS}
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for j, job in JOBS.items():
                for t in order:
                    got[t, j].append(once(trees[t], job, tmp / f"{t}-{r}-{len(got[t, j])}-{hash(j)}",
                                          tmp / f"cache-{t}"))
    print(f"{'job':<24} {'old steps/s':>12} {'new steps/s':>12} {'new/old':>8} {'old wall':>9} {'new wall':>9}")
    for j in JOBS:
        o = [statistics.median(v) for v in zip(*got["old", j])]
        n = [statistics.median(v) for v in zip(*got["new", j])]
        print(f"{j:<24} {o[0]:>12.1f} {n[0]:>12.1f} {n[0] / o[0]:>8.3f} {o[1]:>8.2f}s {n[1]:>8.2f}s")


if __name__ == "__main__":
    main()
