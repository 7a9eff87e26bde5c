"""The first minute: the default job against the PyTorch script doing the same work, as whole processes.

    python benchmarks/first_minute.py [--rounds 3] [--json PATH] [--torch-threads N]

Two commands, each timed from process start to exit (every file written, the figure drawn):

  vgrun   `vgrun model=mlp depth=20 act=sigmoid` (digits, width 128, batch 128, 2000 SGD
          steps, every step traced), run twice per round with a compilation cache of its own:
            cold  VGRUN_CACHE (JAX's persistent compilation cache) a new, empty folder;
            warm  the same command again on the folder the cold run filled.
          Beside the wall time, from the run's summary.json: timing.compile_s (init plus
          compiling the job's programs) and timing.steps_per_s (the training loop alone).
  torch   `python benchmarks/torch_mlp.py --depth 20 --flush-denormal`: the same network,
          data, optimizer and per-step gradient norms in eager PyTorch (its default threads,
          flush-to-zero of subnormals); it has no compilation cache, so all its runs are one
          sample. Its own JSON gives steps_per_s (the training loop alone). --torch-threads 1
          adds `--threads 1`: on a machine whose other core is busy, PyTorch's default two
          threads spend most of their time waiting on each other (benchmarks/README.md).

Every round runs vgrun cold, torch, vgrun warm, torch; odd rounds start with torch instead
(torch, vgrun cold, torch, vgrun warm). Before the rounds each command runs once untimed, so
no timing pays for reading the libraries from disk. The table shows medians and the ratios
torch / vgrun of wall times (> 1: vgrun is faster), cold and warm, and of steps/s reversed
(vgrun / torch). Each timing also records how many cores other processes used meanwhile
(/proc/stat less the child's own CPU time): on a shared 2-core machine a neighbour's job
slows a timing, and that column says which. Without torch installed, vgrun is timed alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JOB = ["model=mlp", "depth=20", "act=sigmoid"]
TORCH_ARGS = ["--depth", "20", "--flush-denormal"]
TORCH_INSTALL = 'pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu'


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], env: dict, cwd: Path) -> dict:
    """Wall seconds of one process, its output, and the cores other processes used meanwhile."""
    busy0, t0 = busy_cpu_s(), time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text, _ = p.communicate()  # reads as it goes: a full pipe never stalls the child
    wall = time.perf_counter() - t0
    own = os.times()  # children's CPU time, cumulative: the difference is this child's
    child_cpu = own.children_user + own.children_system - timed.children_cpu
    timed.children_cpu = own.children_user + own.children_system
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    others = max(0.0, (busy_cpu_s() - busy0 - child_cpu) / wall)
    return {"wall_s": wall, "others_cores": others, "text": text}


timed.children_cpu = 0.0


def vgrun_cmd() -> list[str]:
    exe = shutil.which("vgrun")
    return [exe] if exe else [sys.executable, "-c", "from vgrun.cli.main import main; main()"]


def run_vgrun(cache: Path, folder: Path, work: Path) -> dict:
    t = timed(vgrun_cmd() + JOB + [f"hydra.run.dir={folder}"], dict(os.environ, VGRUN_CACHE=str(cache)), work)
    timing = json.loads((folder / "summary.json").read_text())["timing"]
    return {"wall_s": t["wall_s"], "others_cores": t["others_cores"], "compile_s": timing["compile_s"],
            "train_s": timing["train_s"], "steps_per_s": timing["steps_per_s"]}


def torch_args(threads: int) -> list[str]:
    return TORCH_ARGS + (["--threads", str(threads)] if threads > 0 else [])


def run_torch(work: Path, threads: int) -> dict:
    t = timed([sys.executable, str(HERE / "torch_mlp.py"), *torch_args(threads)], dict(os.environ), work)
    out = json.loads(t["text"].strip().splitlines()[-1])
    return {"wall_s": t["wall_s"], "others_cores": t["others_cores"], "train_s": out["train_s"],
            "steps_per_s": out["steps_per_s"], "threads": out["threads"], "torch": out["torch"]}


def med(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def machine() -> dict:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "commit": commit,
            "loadavg_at_start": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M")}


def fmt(x: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the figures and every timing here")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch_mlp.py --threads (0: PyTorch's default, the issue's command)")
    args = ap.parse_args()

    have_torch = importlib.util.find_spec("torch") is not None
    if not have_torch:
        print(f"PyTorch peer missing (torch is not installed; {TORCH_INSTALL}): timing vgrun alone", flush=True)
    vgrun_line, torch_line = " ".join(["vgrun", *JOB]), " ".join(["torch_mlp.py", *torch_args(args.torch_threads)])
    print(f"vgrun: {vgrun_line}\ntorch: {torch_line}", flush=True)
    runs: dict[str, list[dict]] = {"vgrun cold": [], "vgrun warm": [], "torch": []}
    with tempfile.TemporaryDirectory(prefix="first-minute-") as tmp:
        work = Path(tmp)
        print("untimed first runs (libraries into the page cache) ...", flush=True)
        run_vgrun(work / "cache-untimed", work / "untimed", work)
        if have_torch:
            run_torch(work, args.torch_threads)
        for r in range(args.rounds):
            cache = work / f"cache-{r}"  # new and empty: the cold run fills it, the warm run reads it
            steps = [("vgrun cold", lambda c=cache, r=r: run_vgrun(c, work / f"cold-{r}", work)),
                     ("torch", lambda: run_torch(work, args.torch_threads)),
                     ("vgrun warm", lambda c=cache, r=r: run_vgrun(c, work / f"warm-{r}", work)),
                     ("torch", lambda: run_torch(work, args.torch_threads))]
            if r % 2 == 1:  # torch first in odd rounds; warm still after cold
                steps = [steps[1], steps[0], steps[3], steps[2]]
            for name, step in steps:
                if name == "torch" and not have_torch:
                    continue
                m = step()
                runs[name].append(m)
                print(f"round {r + 1}: {name:10s} {m['wall_s']:6.2f} s  (steps/s {m['steps_per_s']:.0f}"
                      + (f", compile {m['compile_s']:.2f} s" if "compile_s" in m else "")
                      + f"; other processes {m['others_cores']:.2f} cores)", flush=True)

    t_wall = med(runs["torch"], "wall_s")
    figures = {}
    for name in ("vgrun cold", "vgrun warm", "torch"):
        figures[name] = {k: med(runs[name], k) for k in ("wall_s", "compile_s", "train_s", "steps_per_s",
                                                         "others_cores")}
    cold, warm, tor = figures["vgrun cold"], figures["vgrun warm"], figures["torch"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    figures["ratios"] = {
        "cold_wall (torch / vgrun)": ratio(t_wall, cold["wall_s"]),
        "warm_wall (torch / vgrun)": ratio(t_wall, warm["wall_s"]),
        "steps_per_s (vgrun warm / torch)": ratio(warm["steps_per_s"], tor["steps_per_s"]),
    }
    mach = machine()
    print(f"\nmedians of {args.rounds} rounds; {mach['cpu']}, {mach['cores']} cores, Python {mach['python']}, "
          f"commit {mach['commit']}, load average {mach['loadavg_at_start']:.2f} at start")
    print(f"{'':12s} {'wall s':>8s} {'compile s':>10s} {'train s':>8s} {'steps/s':>8s} {'others':>7s}")
    for name in ("vgrun cold", "vgrun warm", "torch"):
        f = figures[name]
        if not runs[name]:
            print(f"{name:12s} {'torch not installed':>44s}")
            continue
        print(f"{name:12s} {fmt(f['wall_s']):>8s} {fmt(f['compile_s']):>10s} {fmt(f['train_s']):>8s} "
              f"{fmt(f['steps_per_s'], '.0f'):>8s} {fmt(f['others_cores']):>7s}")
    print("(others: cores used by other processes during a timing, median)")
    for k, v in figures["ratios"].items():
        print(f"{k:34s} {fmt(v, '.2f', 'x')}")
    if args.json:
        args.json.write_text(json.dumps({"machine": mach, "rounds": args.rounds, "vgrun": vgrun_line,
                                         "torch": torch_line, "figures": figures, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
