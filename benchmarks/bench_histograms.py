"""What do the log-magnitude histograms cost? The default job (`vgrun model=mlp depth=20 act=sigmoid`:
digits, width 128, batch 128, 2000 SGD steps in 20 chunks, every step traced) with histograms
(step 0 and every chunk's end: 21 snapshots of W, dL/dW and delta per layer) against the same job
with `histograms=false`, side by side:

  (a) in one process, XLA on one thread as the CLI runs it: compiling the job's programs (cold, no
      persistent cache) and the training loop (`Result.train_s`, the histograms' passes included);
  (b) the whole command line, as separate processes (writing histograms.parquet and drawing
      histograms.png included), with the persistent compilation cache warm.

The two configurations alternate, round after round; medians are reported, and the ratios.

    python benchmarks/bench_histograms.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, os, sys
allowed = os.sched_getaffinity(0); os.sched_setaffinity(0, {min(allowed)})
import jax; jax.config.update("jax_platforms", "cpu"); jax.devices(); os.sched_setaffinity(0, allowed)
import vgrun
from vgrun.training import loop
from vgrun.training.cache import ProgramCache
rounds = int(sys.argv[1])
cfgs = {on: vgrun.compose(["model=mlp", "depth=20", "act=sigmoid", f"histograms={str(on).lower()}"])
        for on in (True, False)}
out = {True: [], False: []}
for _ in range(rounds):
    for on, cfg in cfgs.items():
        r = loop.run(cfg, cache=ProgramCache(keep=0))
        out[on].append((r.compile_s, r.train_s))
print(json.dumps({str(k): v for k, v in out.items()}))
"""


def cli(on: bool, folder: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vgrun.cli.main", "model=mlp", "depth=20", "act=sigmoid",
                    f"histograms={str(on).lower()}", f"hydra.run.dir={folder}"], check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, VGRUN_CACHE="", JAX_ENABLE_COMPILATION_CACHE="false")
    child = subprocess.run([sys.executable, "-c", CHILD, str(args.rounds)], capture_output=True, text=True, env=env,
                           check=True)
    inproc = {k == "True": v for k, v in json.loads(child.stdout.strip().splitlines()[-1]).items()}
    med = {on: [statistics.median(x[i] for x in inproc[on]) for i in (0, 1)] for on in (True, False)}
    print(f"(a) in one process, medians of {args.rounds}:")
    for i, what in enumerate(("compile s", "train s")):
        print(f"    {what:10} with {med[True][i]:7.3f}   without {med[False][i]:7.3f}   "
              f"ratio {med[True][i] / med[False][i]:.3f}")
    walls = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        cli(True, f"{tmp}/warm")  # the persistent cache warm for both
        cli(False, f"{tmp}/warm2")
        for r in range(args.rounds):
            for on in (True, False):
                walls[on].append(cli(on, f"{tmp}/{on}{r}"))
    w = {on: statistics.median(v) for on, v in walls.items()}
    print(f"(b) the command line, whole processes, warm cache, medians of {args.rounds}:")
    print(f"    wall s     with {w[True]:7.3f}   without {w[False]:7.3f}   ratio {w[True] / w[False]:.3f}")


if __name__ == "__main__":
    main()
