"""What do the per-layer traces cost? Time per training step of the default job's chunk
program (digits, width 128, batch 128, sigmoid, SGD) traced at every step (trace_every=1)
against the same job with one step in 100 traced and the same 20 chunks (trace_every=100,
the baseline of run.py's "trace cost") and against one chunk never traced within it
(trace_every=2000); and the compile time of the traced program.

    taskset -c 1 python benchmarks/bench_traces.py [--depths 10 20 50] [--rounds 8] [--optimizer sgd adam]

One process per depth and optimizer; XLA on one thread (as the CLI runs it). The programs'
chunks are timed alternately, round after round, and the best round of each is kept, so a
neighbour's load on the machine hits all alike. Steadier than run.py's single CLI runs.
Under plain SGD the update norms come from the gradient norms (vgrun.training.optim.scales_gradient);
`--optimizer adam` shows the general path, a pass over every update. No persistent
compilation cache: the compile times are cold.
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
import jax; jax.config.update("jax_platforms", "cpu"); jax.devices(); os.sched_setaffinity(0, allowed)
from vgrun.training import loop as T
from vgrun.training import program
from vgrun.config.schema import Config
from vgrun.config.schema import OptimizerConfig
depth, rounds, optimizer = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
progs = {}
for every in (1, 100, 2000):
    cfg = Config(depth=depth, act="sigmoid", trace_every=every, steps=2000, chunks=1 if every == 2000 else 20,
                 optimizer=OptimizerConfig(name=optimizer, lr=0.03 if optimizer == "sgd" else 0.001))
    prog = program.make_train(cfg)
    d = prog.problem.arrays
    carry = jax.block_until_ready(prog.init(jax.random.PRNGKey(0)))
    t = time.perf_counter(); chunk = prog.chunk.lower(carry, d).compile(); compile_s = time.perf_counter() - t
    carry, _ = jax.block_until_ready(chunk(carry, d))
    progs[every] = dict(chunk=chunk, carry=carry, d=d, steps=prog.chunk_steps, compile_s=compile_s, best=float("inf"))
for _ in range(rounds):
    for p in progs.values():
        t = time.perf_counter(); p["carry"], _ = jax.block_until_ready(p["chunk"](p["carry"], p["d"]))
        p["best"] = min(p["best"], (time.perf_counter() - t) / p["steps"])
traced, sparse, plain = progs[1], progs[100], progs[2000]
print(json.dumps({"depth": depth, "optimizer": optimizer, "traced_ms": 1e3 * traced["best"],
                  "sparse_ms": 1e3 * sparse["best"], "untraced_ms": 1e3 * plain["best"],
                  "compile_traced_s": traced["compile_s"], "compile_untraced_s": plain["compile_s"]}))
"""


def measure(depth: int, rounds: int, optimizer: str) -> dict:
    env = dict(os.environ, VGRUN_CACHE="", JAX_ENABLE_COMPILATION_CACHE="false")
    out = subprocess.run([sys.executable, "-c", CHILD, str(depth), str(rounds), optimizer], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[10, 20, 50])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--optimizer", nargs="+", default=["sgd"], choices=["sgd", "momentum", "adam", "rmsprop"])
    ap.add_argument("--json", action="store_true", help="one JSON line per measurement instead of the table")
    args = ap.parse_args()
    if args.json:
        for optimizer in args.optimizer:
            for depth in args.depths:
                print(json.dumps(measure(depth, args.rounds, optimizer)), flush=True)
        return
    print(f"{'optimizer':>9} {'depth':>5} {'traced ms':>10} {'sparse ms':>10} {'untraced ms':>12} "
          f"{'vs sparse':>10} {'vs untraced':>12} {'compile traced s':>17}")
    for optimizer in args.optimizer:
        for depth in args.depths:
            r = measure(depth, args.rounds, optimizer)
            vs_sparse = 100 * (r["traced_ms"] / r["sparse_ms"] - 1)
            vs_plain = 100 * (r["traced_ms"] / r["untraced_ms"] - 1)
            print(f"{optimizer:>9} {depth:>5} {r['traced_ms']:>10.3f} {r['sparse_ms']:>10.3f} {r['untraced_ms']:>12.3f} "
                  f"{vs_sparse:>9.1f}% {vs_plain:>11.1f}% {r['compile_traced_s']:>17.2f}", flush=True)


if __name__ == "__main__":
    main()
