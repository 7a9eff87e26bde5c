"""vgrun's recurrent benchmark against PyTorch eager: one command, a table, results_rnn.md.

    python benchmarks/bench_rnn.py                    # rnn + lstm, 300 steps (~7 min)
    python benchmarks/bench_rnn.py --models rnn --threads 1

The job: `vgrun model=rnn|lstm data=adding width=128 batch_size=64 seq_len=200
optimizer=adam optimizer.lr=0.001 steps=300 trace_every=1|100`, i.e. one recurrent
layer of 128 (tanh RNN or LSTM), T = 200, batch 64, Adam 1e-3, the adding problem.
Everything runs one at a time, each in a fresh process, after waiting until no other
benchmark (benchmarks/run.py, torch_mlp.py) runs and the machine is quiet:

  vgrun          the CLI, with a new, empty JAX compilation cache (VGRUN_CACHE) per run;
                 compile_s, train_s and steps_per_s from the run folder's summary.json
                 (train_s: all chunks incl. the held-out evaluations, after compilation).
                 trace_every=1: per-time-step traces every step (|dL/dh_t|, the Jacobian
                 estimate = a second gradient stream in the same reverse scan, spectral
                 radius and sigma_max of W_rec = on the host, beside the next chunk);
                 trace_every=100: one traced step in 100. Each at threads=1 (one XLA
                 thread, the default) and threads=2 (both cores); the comparisons take
                 vgrun's and PyTorch's fastest thread setting each.
  PyTorch        benchmarks/torch_rnn.py, the same training with |dL/dh_t| for every t and
                 the weight-gradient norms at every step, 1 thread and PyTorch's default;
                 impl=loop (the recurrence as a Python loop, retain_grad on every h_t: the
                 true dL/dh_t); loopjac, the loop that also pulls a random unit vector
                 back from h_{T-1} to every h_t (--jacobian: vgrun's `jacobian` trace, so
                 both record the same time-step traces; vgrun's spectra of W_rec, on the
                 host beside the next chunk, are not done there); and impl=fused (one
                 nn.RNN / nn.LSTM call: faster, but its output's gradient is not dL/dh_t,
                 so it does NOT do the same work; shown as PyTorch's floor). Held-out
                 evaluation every 15 steps, as vgrun's chunks.

Matmul FLOPs per plain training step (forward + backward): 3 * T * 2 * B * H * gH,
g = 1 (rnn) or 4 (lstm); the traced step adds T * 2 * B * H * gH (the jacobian stream's
step back through W at every time step; it takes no weight gradient).
"""

from __future__ import annotations

import argparse
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

from rich import box
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
H, B, T = 128, 64, 200
GATES = {"rnn": 1, "lstm": 4}
TARGET = 1.5
OTHERS = ("benchmarks/run.py", "torch_mlp.py")  # other benchmarks that must not run beside a timing
QUIET = {"cores": 0.2, "max_wait": 600.0, "others_wait": 2400.0, "retries": 2}
NOISE: list[float] = []
console = Console() if sys.stdout.isatty() else Console(width=220)


# ---------------------------------------------------------------------------- a quiet machine


def busy_cpu_s() -> float:
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def others_running() -> list[str]:
    found = []
    for pat in OTHERS:
        out = subprocess.run(["pgrep", "-f", pat], capture_output=True, text=True).stdout.split()
        found += [p for p in out if int(p) != os.getpid()]
    return found


def wait_quiet() -> None:
    """Wait until no other benchmark runs (poll every 30 s) and other load is below QUIET['cores']."""
    t0, said = time.monotonic(), False
    while others_running() and time.monotonic() - t0 < QUIET["others_wait"]:
        if not said:
            console.print("[yellow]another benchmark is running: waiting (polling every 30 s)[/]")
            said = True
        time.sleep(30)
    if others_running():
        console.print("[yellow]warning: another benchmark is still running; timing anyway[/]")
    t0 = time.monotonic()
    while True:
        b0 = busy_cpu_s()
        time.sleep(2.0)
        load = (busy_cpu_s() - b0) / 2.0
        if load < QUIET["cores"] or time.monotonic() - t0 > QUIET["max_wait"]:
            return


def timed(cmd: list[str], env: dict | None = None, before=None) -> dict:
    """Run cmd once the machine is quiet; retry when other processes used > QUIET['cores'] meanwhile."""
    for attempt in range(QUIET["retries"] + 1):
        wait_quiet()
        if before is not None:
            before()
        out = tempfile.TemporaryFile("w+")
        busy0, t0 = busy_cpu_s(), time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        others = max(0.0, (busy_cpu_s() - busy0 - usage.ru_utime - usage.ru_stime) / wall)
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
        out.close()
        if code != 0:
            sys.exit(f"failed ({code}): {' '.join(cmd)}\n{text[-3000:]}")
        if others <= QUIET["cores"]:
            break
        console.print(f"[yellow]other processes used {others:.2f} cores during this timing"
                      + ("; retrying" if attempt < QUIET["retries"] else "; keeping it (flagged)") + "[/]")
    NOISE.append(others)
    return {"wall_s": wall, "rss_mib": usage.ru_maxrss / 1024, "text": text, "others": others}


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- the jobs


def vgrun_cmd() -> list[str]:
    exe = shutil.which("vgrun")
    return [exe] if exe else [sys.executable, "-c", "from vgrun.cli.main import main; main()"]


def vgrun_job(model: str, every: int, threads: int, steps: int, work: Path) -> dict:
    name = f"{model}-every{every}-threads{threads}"
    run_dir, cache = work / name, work / f"cache-{name}"
    args = [f"model={model}", "data=adding", f"width={H}", f"batch_size={B}", f"seq_len={T}", f"steps={steps}",
            f"trace_every={every}", "optimizer=adam", "optimizer.lr=0.001", f"threads={threads}"]
    cmd = vgrun_cmd() + args + [f"hydra.run.dir={run_dir}"]
    env = dict(os.environ, VGRUN_CACHE=str(cache))
    t = timed(cmd, env=env, before=lambda: shutil.rmtree(cache, ignore_errors=True))
    summary = json.loads((run_dir / "summary.json").read_text())
    tm = summary["timing"]
    return {"compile_s": tm["compile_s"], "train_s": tm["train_s"], "steps_per_s": tm["steps_per_s"],
            "wall_s": t["wall_s"], "rss_mib": t["rss_mib"], "other_cores": t["others"],
            "final_train_loss": summary["final"]["train_loss"], "cmd": "vgrun " + " ".join(args)}


def eval_period(steps: int, every: int, chunks: int = 20) -> int:
    """Steps per vgrun chunk (one held-out evaluation each): vgrun.training.program.n_chunks_for, default chunks."""
    blocks = steps // every
    n = min((d for d in range(1, blocks + 1) if blocks % d == 0), key=lambda d: (abs(d - chunks), d))
    return steps // n


def torch_job(model: str, impl: str, threads: int, steps: int, extra: tuple = ()) -> dict:
    """impl: loop, fused, or loopjac (the loop with --jacobian: vgrun's time-step traces)."""
    jac = ("--jacobian",) if impl == "loopjac" else ()
    cmd = [sys.executable, str(HERE / "torch_rnn.py"), f"--model={model}", f"--impl={impl.removesuffix('jac')}",
           f"--threads={threads}", f"--steps={steps}", f"--hidden={H}", f"--batch={B}", f"--seq-len={T}", *jac,
           *(extra or (f"--eval-every={eval_period(steps, 1)}",))]
    t = timed(cmd)
    return dict(last_json(t["text"]), wall_s=t["wall_s"], rss_mib=t["rss_mib"], other_cores=t["others"],
                cmd=" ".join(["python", "benchmarks/torch_rnn.py"] + cmd[2:]))


# ---------------------------------------------------------------------------- tables


def flops(model: str, traced: bool) -> float:
    fwd = T * 2 * B * H * GATES[model] * H
    return (4 if traced else 3) * fwd


def vgrun_key(every: int, threads: int) -> str:
    return f"every{every}-threads{threads}"


def best_vgrun(res: dict, m: str, every: int) -> tuple[float, int]:
    """(steps/s, threads) of vgrun's fastest thread setting at this trace_every."""
    runs = {int(k.split("threads")[1]): v for k, v in res[m]["vgrun"].items() if k.startswith(f"every{every}-")}
    th = max(runs, key=lambda t: runs[t]["steps_per_s"])
    return runs[th]["steps_per_s"], th


def rows_vgrun(res: dict, models: list[str], vgrun_threads):
    head = ["model", "trace_every", "threads", "compile s (cold cache)", "train s", "steps/s", "ms/step",
            "matmul GFLOP/s", "wall s", "final loss"]
    rows = []
    for m in models:
        for every, th in ((e, t) for e in (1, 100) for t in vgrun_threads):
            v = res[m]["vgrun"][vgrun_key(every, th)]
            traced_share = 1.0 / every
            f = traced_share * flops(m, True) + (1 - traced_share) * flops(m, False)
            rows.append([m, str(every), str(th), f"{v['compile_s']:.2f}", f"{v['train_s']:.1f}",
                         f"{v['steps_per_s']:.1f}", f"{1e3 / v['steps_per_s']:.1f}",
                         f"{f * v['steps_per_s'] / 1e9:.1f}", f"{v['wall_s']:.1f}", f"{v['final_train_loss']:.4f}"])
    return head, rows


def torch_label(impl: str, threads: int) -> str:
    what = {"loopjac": "loop + Jacobian pull-back"}.get(impl, impl)
    return f"torch {what}, {'1 thread' if threads == 1 else 'default threads'}"


def rows_torch(res: dict, models: list[str], variants):
    head = ["model", "PyTorch variant", "evaluation every", "steps/s", "ms/step", "dL/dh_t nonzero steps",
            "vgrun every=1 ×", "vgrun every=100 ×"]
    rows = []
    for m in models:
        v1, v100 = best_vgrun(res, m, 1)[0], best_vgrun(res, m, 100)[0]
        keys = [(f"{i}{th}", i, th) for i, th in variants] + [(f"loop{th}_ev100", "loop", th) for _, th in variants]
        for key, impl, threads in dict.fromkeys(keys):
            if key not in res[m]["torch"]:
                continue
            t = res[m]["torch"][key]
            rows.append([m, torch_label(impl, threads) + (" (not dL/dh_t)" if impl == "fused" else ""),
                         f"{t['eval_every']} steps", f"{t['steps_per_s']:.1f}", f"{t['ms_per_step']:.1f}",
                         f"{t['delta_nonzero_steps']} of {T}", f"{v1 / t['steps_per_s']:.2f}×",
                         f"{v100 / t['steps_per_s']:.2f}×"])
    return head, rows


def rows_targets(res: dict, models: list[str], variants, steps: int):
    head = ["target", "measured", "met"]
    rows = []
    for m in models:
        same = {th: res[m]["torch"][f"{impl}{th}"] for impl, th in variants if impl == "loop"}
        best_th = max(same, key=lambda th: same[th]["steps_per_s"])
        best = same[best_th]["steps_per_s"]
        label = torch_label("loop", best_th)
        for every in (1, 100):
            v, vth = best_vgrun(res, m, every)
            r = v / best
            rows.append([f"{m}, trace_every={every}: vgrun >= {TARGET}× PyTorch loop with norms every step "
                         f"(each at its fastest thread setting)", f"{r:.2f}× (vgrun threads={vth}, {label})",
                         "yes" if r >= TARGET else "NO"])
        ev = {th: res[m]["torch"][f"loop{th}_ev100"] for _, th in variants if f"loop{th}_ev100" in res[m]["torch"]}
        if ev:
            th = max(ev, key=lambda k: ev[k]["steps_per_s"])
            r = best_vgrun(res, m, 100)[0] / ev[th]["steps_per_s"]
            rows.append([f"{m}, trace_every=100: the same, both evaluating every {eval_period(steps, 100)} steps",
                         f"{r:.2f}× ({torch_label('loop', th)})", "yes" if r >= TARGET else "NO"])
        jac = {th: res[m]["torch"][f"{impl}{th}"] for impl, th in variants if impl == "loopjac"}
        if jac:  # both doing vgrun's time-step traces: dL/dh_t and the Jacobian pull-back, every step
            th = max(jac, key=lambda k: jac[k]["steps_per_s"])
            v, vth = best_vgrun(res, m, 1)
            r = v / jac[th]["steps_per_s"]
            rows.append([f"{m}, trace_every=1: vgrun >= {TARGET}× PyTorch loop doing vgrun's time-step traces "
                         f"(dL/dh_t and the Jacobian pull-back; each at its fastest thread setting)",
                         f"{r:.2f}× (vgrun threads={vth}, {torch_label('loopjac', th)})",
                         "yes" if r >= TARGET else "NO"])
        fused = max((res[m]["torch"][f"{i}{th}"]["steps_per_s"] for i, th in variants if i == "fused"), default=None)
        if fused:
            r = best_vgrun(res, m, 100)[0] / fused
            rows.append([f"{m}, trace_every=100 vs PyTorch's fused {m} (no dL/dh_t)", f"{r:.2f}×",
                         "yes" if r >= TARGET else "NO"])
    return head, rows


def rich_table(title, head, rows) -> Table:
    t = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i < 2 else "right", overflow="fold")
    for row in rows:
        t.add_row(*row)
    return t


def md_table(title, head, rows) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("[b]", "**").replace("[/b]", "**") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    from importlib.metadata import version

    versions = {}
    for mod in ("jax", "jaxlib", "torch", "numpy"):
        try:
            versions[mod] = version(mod)
        except Exception:
            versions[mod] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), **versions}


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["rnn", "lstm"], choices=list(GATES))
    ap.add_argument("--steps", type=int, default=300, help="training steps per run (a multiple of 100)")
    ap.add_argument("--repeat", type=int, default=1, help="repeat the vgrun and PyTorch runs; tables show medians")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 0], help="PyTorch threads (0: its default)")
    ap.add_argument("--vgrun-threads", type=int, nargs="+", default=[1, 2], help="vgrun's threads= (XLA CPU threads)")
    ap.add_argument("--impls", nargs="+", default=["loop", "loopjac", "fused"], choices=["loop", "loopjac", "fused"],
                    help="PyTorch variants: loop (dL/dh_t), loopjac (loop + the Jacobian pull-back), fused")
    ap.add_argument("--quiet-cores", type=float, default=QUIET["cores"])
    ap.add_argument("--out", type=Path, default=HERE / "results_rnn")
    args = ap.parse_args()
    QUIET["cores"] = args.quiet_cores
    if "loop" not in args.impls:
        sys.exit("--impls must include loop (the PyTorch variant that does vgrun's work)")
    variants = [(i, t) for i in args.impls for t in args.threads]

    t_start = time.perf_counter()
    res = {}
    with tempfile.TemporaryDirectory(prefix="vgrun-bench-rnn-") as tmp:
        for m in args.models:
            reps = []
            for r in range(args.repeat):
                rep = {"vgrun": {}, "torch": {}}
                for every in (1, 100):
                    for th in args.vgrun_threads:
                        console.print(f"{m}: vgrun trace_every={every} threads={th} (repeat {r + 1}/{args.repeat})",
                                      style="dim")
                        rep["vgrun"][vgrun_key(every, th)] = vgrun_job(m, every, th, args.steps, Path(tmp) / f"r{r}")
                for impl, threads in variants:
                    console.print(f"{m}: {torch_label(impl, threads)} (repeat {r + 1}/{args.repeat})", style="dim")
                    rep["torch"][f"{impl}{threads}"] = torch_job(m, impl, threads, args.steps)
                for threads in args.threads:  # evaluating as rarely as vgrun with trace_every=100
                    ev = eval_period(args.steps, 100)
                    console.print(f"{m}: {torch_label('loop', threads)}, evaluation every {ev} steps", style="dim")
                    rep["torch"][f"loop{threads}_ev100"] = torch_job(m, "loop", threads, args.steps, (f"--eval-every={ev}",))
                reps.append(rep)
            res[m] = {side: {k: median_of([rep[side][k] for rep in reps]) for k in reps[0][side]}
                      for side in ("vgrun", "torch")}
            res[m]["repeats"] = reps
    elapsed = time.perf_counter() - t_start

    info = machine()
    header = (f"{info['cpu']}, {info['cores']} cores; python {info['python']}, jax {info['jax']}, torch {info['torch']}; "
              f"hidden {H}, batch {B}, seq_len {T}, {args.steps} steps, repeat {args.repeat} (medians); "
              f"benchmark took {elapsed / 60:.1f} min; other processes used at most {max(NOISE):.2f} cores "
              f"during any timing")
    tables = [
        (f"vgrun CLI, data=adding, hidden {H}, batch {B}, T={T}, adam 1e-3, {args.steps} steps", *rows_vgrun(res, args.models, args.vgrun_threads)),
        ("PyTorch eager (benchmarks/torch_rnn.py) and vgrun / PyTorch throughput", *rows_torch(res, args.models, variants)),
        ("targets", *rows_targets(res, args.models, variants, args.steps)),
    ]
    console.print(header)
    for t in tables:
        console.print(rich_table(*t))
    cmds = sorted({v["cmd"] for m in args.models for v in res[m]["vgrun"].values()}
                  | {v["cmd"] for m in args.models for v in res[m]["torch"].values()})
    md = f"{header}\n\n" + "\n".join(md_table(*t) for t in tables)
    md += "\nCommands (vgrun runs also get `hydra.run.dir=<tmp>` and an empty `VGRUN_CACHE`):\n\n"
    md += "\n".join(f"    {c}" for c in cmds) + "\n"
    args.out.with_suffix(".md").write_text(md)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "steps": args.steps, "repeat": args.repeat, "hidden": H, "batch": B, "seq_len": T,
         "results": res, "elapsed_s": elapsed, "other_cores_per_timing": NOISE}, indent=1, default=str))
    console.print(f"written: {args.out.with_suffix('.md')}, {args.out.with_suffix('.json')}")


def median_of(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in runs)
    return out


if __name__ == "__main__":
    main()
