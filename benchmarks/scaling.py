"""How well this machine runs two jobs at once: the ceiling of every one-process-per-core path.

    python benchmarks/scaling.py                 # ~1 min on 2 cores
    python benchmarks/scaling.py --rounds 3

The default job's training program (`depth=10 act=sigmoid`, width 128, batch 128, traces
every step: the chunk program every sweep job runs) runs in one process pinned to a core,
alone, for --seconds; then in one process per core, all at once. Each process starts its
XLA backend on its one core (as a sweep worker does), compiles (from a shared cache), runs
the program once, and waits at a barrier, so only steady-state training is timed.

    scaling = cores x (ms a step alone) / (mean ms a step, all at once)

It is the number of cores on a machine whose cores do not slow each other down. A sweep
through the cores launcher cannot beat it on its training (bench_sweep.py prints it beside
its ratios); on a VM whose virtual cores share physical ones, or whose host is busy, it is
lower, and it can change within minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(core: int, seconds: float, folder: Path) -> None:
    os.sched_setaffinity(0, {core})  # before JAX starts: its CPU backend gets one thread, as a sweep worker's
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder / "cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    from vgrun.config import hyper
    from vgrun.training import loop as train
    from vgrun.training import program
    from vgrun.config.schema import Config

    cfg = Config(depth=10, act="sigmoid")
    prog = program.make_train(cfg)
    key, hp, data = jax.random.PRNGKey(0), hyper.values(cfg), prog.problem.arrays
    chunk = prog.chunk.lower(jax.eval_shape(prog.init_jit, key, hp), data).compile()
    carry = jax.block_until_ready(chunk(prog.init_jit(key, hp), data))[0]
    (folder / f"ready-{core}").touch()
    while not (folder / "go").exists():
        time.sleep(0.005)
    t0, steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        carry = jax.block_until_ready(chunk(carry, data))[0]
        steps += prog.chunk_steps
    print(json.dumps({"core": core, "ms_per_step": 1e3 * (time.perf_counter() - t0) / steps, "steps": steps}))


def together(cores: list[int], seconds: float, folder: Path) -> list[float]:
    """ms a step of each process, one per core in `cores`, timed over the same seconds."""
    for f in folder.glob("ready-*"):
        f.unlink()
    (folder / "go").unlink(missing_ok=True)
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(c), "--seconds", str(seconds),
                               "--folder", str(folder)], stdout=subprocess.PIPE, text=True) for c in cores]
    while sum(1 for _ in folder.glob("ready-*")) < len(cores):
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a scaling worker ended before it was ready")
        time.sleep(0.01)
    (folder / "go").touch()
    return [json.loads(p.communicate()[0])["ms_per_step"] for p in procs]


def measure(seconds: float = 10.0) -> dict:
    """One round: alone on the first core, then one process per core at once."""
    cores = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="vgrun-scaling-") as tmp:
        folder = Path(tmp)
        alone = together(cores[:1], seconds, folder)[0]
        both = together(cores, seconds, folder)
    return {"cores": len(cores), "alone_ms": alone, "together_ms": both,
            "scaling": len(cores) * alone / (sum(both) / len(both))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.seconds, args.folder)
    for r in range(args.rounds):
        m = measure(args.seconds)
        print(f"round {r + 1}: alone {m['alone_ms']:.3f} ms a step; {m['cores']} at once "
              f"{', '.join(f'{x:.3f}' for x in m['together_ms'])} ms; scaling {m['scaling']:.2f} of {m['cores']}")


if __name__ == "__main__":
    main()
