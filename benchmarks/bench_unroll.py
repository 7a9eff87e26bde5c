"""How to apply the stacked hidden layers: a rolled lax.scan (unroll=1), fully unrolled, or
vgrun's rule (auto: unrolled up to FULL_UNROLL_DEPTH layers, rolled beyond)?

For each depth and unroll setting, compiles the default job's chunk program (digits,
width 128, batch 128, sigmoid, traces every step) and measures compile time and
time per training step (best of 3 chunks after a warm-up). Run:

    python benchmarks/bench_unroll.py [--depths 10 20 50 100 200] [--unrolls 1 full]

Each configuration runs in its own process with XLA on one thread (as the CLI does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
allowed = os.sched_getaffinity(0); os.sched_setaffinity(0, {min(allowed)})
import jax; jax.devices(); os.sched_setaffinity(0, allowed)
import numpy as np
import vgrun.nn.mlp as mlp
from vgrun.training import loop as T
from vgrun.training import program
from vgrun.config.schema import Config
depth, unroll, every = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if unroll != "auto":  # auto: vgrun's own rule (FULL_UNROLL_DEPTH)
    mlp.FULL_UNROLL_DEPTH = 10**9 if unroll == "full" else 0
    assert unroll in ("full", "1"), "the model offers full unrolling or a rolled scan"
cfg = Config(depth=depth, act="sigmoid", trace_every=every, steps=2000, chunks=20)
prog = program.make_train(cfg)
d = prog.problem.arrays
carry = jax.block_until_ready(prog.init(jax.random.PRNGKey(0)))
t = time.perf_counter(); chunk = prog.chunk.lower(carry, d).compile(); compile_s = time.perf_counter() - t
carry, out = jax.block_until_ready(chunk(carry, d))
best = float("inf")
for _ in range(3):
    t = time.perf_counter(); carry, out = jax.block_until_ready(chunk(carry, d)); best = min(best, time.perf_counter() - t)
print(json.dumps({"depth": depth, "unroll": unroll, "trace_every": every, "compile_s": compile_s,
                  "ms_per_step": 1e3 * best / prog.chunk_steps}))
"""


def measure(depth: int, unroll: str, every: int) -> dict:
    env = dict(os.environ, VGRUN_CACHE="", JAX_ENABLE_COMPILATION_CACHE="false")
    out = subprocess.run([sys.executable, "-c", CHILD, str(depth), unroll, str(every)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[10, 20, 50, 100, 200])
    ap.add_argument("--unrolls", nargs="+", default=["1", "full", "auto"])
    ap.add_argument("--trace-every", type=int, default=1)
    args = ap.parse_args()
    print(f"{'depth':>5} {'unroll':>6} {'compile s':>10} {'ms/step':>8}")
    for depth in args.depths:
        for unroll in args.unrolls:
            r = measure(depth, unroll, args.trace_every)
            print(f"{depth:>5} {unroll:>6} {r['compile_s']:>10.2f} {r['ms_per_step']:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
