"""A 16-job sweep (4 learning rates x 4 seeds) of the default job, every local path, one table.

    python benchmarks/bench_sweep.py                    # ~10 min on 2 cores
    python benchmarks/bench_sweep.py --steps 200        # a quick look

The job: `vgrun model=mlp depth=10 act=sigmoid` (digits, width 128, batch 128, 2000 SGD
steps, per-layer traces every step: the core benchmark's job, benchmarks/run.py), swept
over optimizer.lr=0.01,0.03,0.1,0.3 x seed=0,1,2,3. Each path runs once, end to end
(process start to every job's files and the sweep summary written), one after another
on a quiet machine, each with a new, empty JAX compilation cache:

  (a) basic       Hydra's basic launcher: 16 jobs one after another in one process
  (b) vectorized  hydra/launcher=vectorized: the 16 jobs share one static signature, so
                  they train as one vmapped program (threads=1: XLA on one core; and
                  threads=2: XLA's pool on both cores)
  (c) joblib      Hydra's joblib launcher (hydra/launcher=joblib): one loky worker per core, each
                  job single-threaded and pinned to a core of its own (vgrun/cores.py)
      cores       hydra/launcher=cores: the same, with the launching process as one of the
                  per-core processes (hydra_plugins/vgrun_cores): one worker fewer to start
  (d) PyTorch     16 runs of benchmarks/torch_mlp.py (the core benchmark's script: same
                  network, data, steps, per-layer gradient norms every step), one thread
                  each: one after another, and two at a time (one per core)

Scaling: each round starts with benchmarks/scaling.py, the steady-state speed of the job's
training step in one process per core at once against one process alone (2.0 on two cores
that do not slow each other down): the ceiling of paths (c) on their training, which on a
VM changes with the host's load. Compilations: the programs compiled (JAX compilation-cache
entries written) per path.
GFLOP/s counts the matmuls of forward + backward of all 16 networks over the whole
wall time (benchmarks/run.py: flops_per_step), against the machine's measured float32
matmul peak (benchmarks/peak.py, in the same run). Written to results_sweep.md/.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (NOISE, QUIET, console, flops_per_step, machine, md_table, peak, rich_table,  # noqa: E402
                 timed, vgrun_cmd)
import scaling  # noqa: E402

HERE = Path(__file__).resolve().parent
LRS, SEEDS, DEPTH = (0.01, 0.03, 0.1, 0.3), (0, 1, 2, 3), 10


def cache_entries(cache: Path) -> int:
    """Programs in the compilation cache (vgrun's compile locks beside them not counted)."""
    if not cache.exists():
        return 0
    return sum(1 for p in cache.rglob("*") if p.is_file() and "vgrun-compiling" not in p.parts)


def vgrun_sweep(name: str, extra: list[str], steps: int, work: Path) -> dict:
    cache, sweep = work / f"cache-{name}", work / f"sweep-{name}"
    cmd = vgrun_cmd() + [
        "-m", f"depth={DEPTH}", "act=sigmoid", f"steps={steps}", "optimizer.lr=" + ",".join(map(str, LRS)),
        "seed=" + ",".join(map(str, SEEDS)), f"hydra.sweep.dir={sweep}", *extra,
    ]
    env = dict(os.environ, VGRUN_CACHE=str(cache))
    t = timed(cmd, env=env, cwd=str(work), log=work / f"{name}.log",
              before=lambda: (shutil.rmtree(cache, ignore_errors=True), shutil.rmtree(sweep, ignore_errors=True)))
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert len(summaries) == len(LRS) * len(SEEDS) and all(s["status"] == "completed" for s in summaries), name
    return {"wall_s": t["wall_s"], "rss_mib": t["rss_mib"], "other_cores": t["others"],
            "compilations": cache_entries(cache), "cmd": " ".join(cmd[1:]),
            "test_acc": {f"lr={s['config']['optimizer']['lr']},seed={s['config']['seed']}": s["final"]["test_acc"]
                         for s in summaries}}


def torch_sweep(steps: int, parallel: int) -> dict:
    """16 torch_mlp.py runs, `parallel` at a time (each one thread), timed as one command."""
    runs = [f"{sys.executable} {HERE / 'torch_mlp.py'} --depth={DEPTH} --steps={steps} --threads=1 "
            f"--lr={lr} --seed={seed}" for lr in LRS for seed in SEEDS]
    script = "\n".join(runs)
    cmd = ["bash", "-c", f"printf '%s\\n' \"$0\" | xargs -P {parallel} -I CMD sh -c CMD > /dev/null", script]
    t = timed(cmd)
    return {"wall_s": t["wall_s"], "rss_mib": t["rss_mib"], "other_cores": t["others"], "compilations": None,
            "cmd": f"16 x torch_mlp.py, {parallel} at a time"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of every path, taking turns; tables show medians")
    ap.add_argument("--paths", nargs="+", default=None, help="only these paths (a b1 b2 c cores d1 d2)")
    ap.add_argument("--quiet-cores", type=float, default=0.3)
    ap.add_argument("--max-wait", type=float, default=900.0)
    ap.add_argument("--retries", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results_sweep")
    args = ap.parse_args()
    QUIET.update(cores=args.quiet_cores, max_wait=args.max_wait, retries=args.retries)
    has_torch = importlib.util.find_spec("torch") is not None
    info, t0 = machine(), time.perf_counter()
    console.print("matmul peak (JAX, float32)", style="dim")
    peak_gflops = max(max(peak(t, [128, 512, 1024]).values()) for t in (1, 0))
    paths = {
        "(a) basic launcher, sequential": ("a", []),
        "(b) vectorized, threads=1": ("b1", ["hydra/launcher=vectorized"]),
        "(b) vectorized, threads=2": ("b2", ["hydra/launcher=vectorized", "threads=2"]),
        "(c) joblib launcher, 1 process per core": ("c", ["hydra/launcher=joblib"]),
        "(c) cores launcher, this process + 1 per other core": ("cores", ["hydra/launcher=cores"]),
    }
    if has_torch:
        paths.update({f"(d) PyTorch eager, 1 thread, {n} at a time": (f"d{n}", n) for n in (1, 2)})
    paths = {label: p for label, p in paths.items() if args.paths is None or p[0] in args.paths}
    rounds: dict = {label: [] for label in paths}
    scalings: list = []
    with tempfile.TemporaryDirectory(prefix="vgrun-bench-sweep-") as tmp:
        for r in range(args.repeat):  # every path once a round: a drift of the machine's speed hits all alike
            console.print(f"  round {r + 1}/{args.repeat}: two-process scaling (benchmarks/scaling.py)", style="dim")
            scalings.append(scaling.measure())
            for label, (name, extra) in paths.items():
                console.print(f"  round {r + 1}/{args.repeat}: {label}", style="dim")
                rounds[label].append(torch_sweep(args.steps, extra) if name.startswith("d")
                                     else vgrun_sweep(name, extra, args.steps, Path(tmp)))
    results = {label: {**runs[0], "wall_s": median([r["wall_s"] for r in runs]), "walls": [r["wall_s"] for r in runs],
                       "rss_mib": max(r["rss_mib"] for r in runs)} for label, runs in rounds.items()}
    elapsed = time.perf_counter() - t0

    base = "(a) basic launcher, sequential"
    a = results.get(base, {}).get("wall_s")
    d = results.get("(d) PyTorch eager, 1 thread, 1 at a time", {}).get("wall_s")
    d2 = results.get("(d) PyTorch eager, 1 thread, 2 at a time", {}).get("wall_s")
    flops = flops_per_step(DEPTH) * args.steps * len(LRS) * len(SEEDS)
    ratio = lambda x, y: "n/a" if x is None else f"{x / y:.2f}"  # noqa: E731
    head = ["path", "wall s", "× faster than (a)", "each round: wall s (× (a) that round)", "× faster than (d) 1 at a time",
            "× faster than (d) 2 at a time", "compilations", "GFLOP/s", "% of peak", "peak RSS MiB"]
    rows = []
    for label, r in results.items():
        gf = flops / r["wall_s"] / 1e9
        each = ", ".join(f"{w:.1f}" + (f" ({aw / w:.2f})" if base in rounds else "")
                         for w, aw in zip(r["walls"], results.get(base, r)["walls"]))
        rows.append([label, f"{r['wall_s']:.1f}", ratio(a, r["wall_s"]), each, ratio(d, r["wall_s"]),
                     ratio(d2, r["wall_s"]), "n/a" if r["compilations"] is None else str(r["compilations"]),
                     f"{gf:.1f}", f"{100 * gf / peak_gflops:.0f}%", f"{r['rss_mib']:.0f}"])
    scaled = ", ".join(f"{m['scaling']:.2f}" for m in scalings)
    header = (f"vgrun {info['vgrun_commit']}; {info['cpu']}, {info['cores']} cores; jax {info['jax']}, torch "
              f"{info['torch'] or '(not installed)'}; 16 jobs = lr {LRS} x seed {SEEDS}, depth {DEPTH} sigmoid, "
              f"{args.steps} steps, traces every step; {args.repeat} round(s), every path once a round, medians; "
              f"matmul peak {peak_gflops:.0f} GFLOP/s; the training step's scaling, {scalings[0]['cores']} processes at once "
              f"against one alone, per round: {scaled}; benchmark took {elapsed / 60:.1f} min; other processes used at "
              f"most {max(NOISE):.2f} cores during any timing (peak RSS: the largest single process)")
    title = "16-job sweep, end to end (wall: process start to every file written)"
    console.print(header)
    console.print(rich_table(title, head, rows))
    args.out.with_suffix(".md").write_text(f"{header}\n\n{md_table(title, head, rows)}")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "steps": args.steps, "repeat": args.repeat, "peak_gflops": peak_gflops, "flops": flops,
         "results": results, "scaling_per_round": scalings, "elapsed_s": elapsed, "other_cores_per_timing": NOISE}, indent=1))
    console.print(f"written: {args.out.with_suffix('.md')}, {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
