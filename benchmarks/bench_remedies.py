"""Time per generation of the gradient-free optimizers (population vmapped) and per epoch of
layer-wise pretraining, beside an SGD step of the same network, on whatever device JAX finds.

    python benchmarks/bench_remedies.py [--depth 20] [--width 128] [--popsize 64]
    python benchmarks/bench_remedies.py --smoke      # tiny sizes: checks the script runs

Digits (1348 training images), sigmoid MLP, batch 128 (a generation evaluates the whole
population on one batch). Each row runs in its own process with XLA on one thread, as
the CLI does; times are the best of 3 repeats after a warm-up, compilation excluded.
Columns: what, ms per unit (unit: an SGD step, a generation, a pretraining epoch =
N_train / pretrain.batch_size updates of one hidden layer), the same per network
evaluation (a generation evaluates popsize + 1 networks; pretraining: per update), and the compile time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
allowed = os.sched_getaffinity(0); os.sched_setaffinity(0, {min(allowed)})
import jax; jax.devices(); os.sched_setaffinity(0, allowed)
import jax.numpy as jnp
from vgrun.training import evolve
from vgrun.config import hyper
from vgrun.training import pretrain
from vgrun.training import loop as train
from vgrun.training import program
from vgrun.config.schema import Config, OptimizerConfig, PretrainConfig
what, depth, width, popsize, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), 3
n = 20  # generations / steps per timed call
cfg = Config(depth=depth, width=width, act="sigmoid", steps=n, trace_every=n, chunks=1)

def best_of(f, *args):
    out = jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter(); jax.block_until_ready(f(*args)); best = min(best, time.perf_counter() - t)
    return best

if what in evolve.ALGORITHMS:
    cfg.optimizer = OptimizerConfig(name=what, popsize=popsize, sigma=0.01)
    prog = evolve.make(cfg)
    d = prog.problem.arrays
    carry = prog.init(jax.random.PRNGKey(0))
    run = jax.jit(lambda c: jax.lax.scan(lambda c, _: prog.generation(c, d), c, length=n))
    t = time.perf_counter(); run = run.lower(carry).compile(); compile_s = time.perf_counter() - t
    ms = 1e3 * best_of(run, carry) / n
    row = {"what": f"{what} generation (popsize {popsize})", "ms": ms, "ms_per_net": ms / (popsize + 1)}
elif what == "sgd":
    prog = program.make_train(cfg)
    d = prog.problem.arrays
    carry = prog.init(jax.random.PRNGKey(0), hyper.values(cfg))
    t = time.perf_counter(); chunk = prog.chunk.lower(carry, d).compile(); compile_s = time.perf_counter() - t
    ms = 1e3 * best_of(lambda c: chunk(jax.tree_util.tree_map(jnp.copy, c), d), carry) / n
    row = {"what": "sgd step (1 traced in 20)", "ms": ms, "ms_per_net": ms}
else:  # autoencoder | rbm: one epoch of one hidden layer [width, width]
    p = PretrainConfig(name=what, batch_size=64)
    data = jax.random.uniform(jax.random.PRNGKey(0), (1348, width))
    steps = 1348 // p.batch_size
    layer = {"w": 0.01 * jax.random.normal(jax.random.PRNGKey(1), (width, width)), "b": jnp.zeros(width),
             "c": jnp.zeros(width)}
    kw = dict(kind=what, act_name="sigmoid", steps=steps, batch=p.batch_size, k=p.k, log_every=steps)
    t = time.perf_counter(); jax.block_until_ready(pretrain.train_layer(layer, data, jax.random.PRNGKey(2), 0.1, **kw))
    compile_s = time.perf_counter() - t
    ms = 1e3 * best_of(lambda: pretrain.train_layer(layer, data, jax.random.PRNGKey(2), 0.1, **kw))
    row = {"what": f"{what} epoch ({steps} updates, batch {p.batch_size})", "ms": ms, "ms_per_net": ms / steps}
row.update(compile_s=compile_s, device=jax.devices()[0].device_kind, depth=depth, width=width)
print(json.dumps(row))
"""


def measure(what: str, depth: int, width: int, popsize: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, what, str(depth), str(width), str(popsize)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--popsize", type=int, default=64)
    ap.add_argument("--what", nargs="+", default=["sgd", "ga", "openai_es", "sep_cma_es", "autoencoder", "rbm"])
    ap.add_argument("--smoke", action="store_true", help="depth 3, width 16, popsize 4: only checks that it runs")
    args = ap.parse_args()
    if args.smoke:
        args.depth, args.width, args.popsize = 3, 16, 4
    rows = [measure(w, args.depth, args.width, args.popsize) for w in args.what]
    print(f"device: {rows[0]['device']}; sigmoid MLP depth {args.depth}, width {args.width}, digits, batch 128")
    print(f"{'what':<44} {'ms/unit':>9} {'ms/net':>8} {'compile s':>10}")
    for r in rows:
        print(f"{r['what']:<44} {r['ms']:>9.3f} {r['ms_per_net']:>8.3f} {r['compile_s']:>10.2f}")


if __name__ == "__main__":
    main()
