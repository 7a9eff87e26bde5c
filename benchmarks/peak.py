"""Measured float32 matmul throughput of JAX (XLA CPU) on this machine.

    python benchmarks/peak.py --threads 1       # XLA started pinned to one core (as vgrun's threads=1)
    python benchmarks/peak.py --threads 0       # all cores

For each size n, a jitted `lax.fori_loop` chains k products c <- c @ q (q orthogonal,
so values stay bounded) and we time the whole loop: 2 n^3 k FLOPs, best of 3 runs
after a warm-up. Prints one JSON object: {"threads": .., "gflops": {n: GFLOP/s}}.
Run it in a fresh process per thread setting: XLA sizes its thread pool once, from the
CPU affinity it sees when the backend starts (the same mechanism vgrun/cli.py uses).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="cores XLA may use (0: all)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    ap.add_argument("--flops", type=float, default=2e10, help="FLOPs per timed loop")
    args = ap.parse_args()

    allowed = os.sched_getaffinity(0)
    if 0 < args.threads < len(allowed):
        os.sched_setaffinity(0, sorted(allowed)[: args.threads])
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.devices()  # start the backend while pinned, then restore the affinity
    os.sched_setaffinity(0, allowed)

    out = {}
    for n in args.sizes:
        k = max(2, int(args.flops / (2 * n**3)))
        rng = np.random.default_rng(0)
        q = jnp.asarray(np.linalg.qr(rng.standard_normal((n, n)))[0], jnp.float32)
        a = jnp.asarray(rng.standard_normal((n, n)), jnp.float32)
        loop = jax.jit(lambda a, q: jax.lax.fori_loop(0, k, lambda i, c: c @ q, a))
        loop(a, q).block_until_ready()  # compile + warm up
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            loop(a, q).block_until_ready()
            best = min(best, time.perf_counter() - t)
        out[n] = 2 * n**3 * k / best / 1e9
    print(json.dumps({"threads": args.threads, "gflops": out}))


if __name__ == "__main__":
    main()
