"""vgrun's recurrent benchmark against PyTorch eager: one command, a table, results_rnn.md.

    python benchmarks/bench_rnn.py                    # rnn + lstm, 300 steps, with the diagnosis (~15 min)
    python benchmarks/bench_rnn.py --models rnn --no-diagnose

The job: `vgrun model=rnn|lstm data=adding width=128 batch_size=64 seq_len=200
optimizer=adam optimizer.lr=0.001 steps=300 trace_every=1|100`, i.e. one recurrent
layer of 128 (tanh RNN or LSTM), T = 200, batch 64, Adam 1e-3, the adding problem.
Everything runs one at a time, each in a fresh process, after waiting until no other
benchmark (benchmarks/run.py, torch_mlp.py) runs and the machine is quiet:

  vgrun          the CLI, with a new, empty JAX compilation cache (VGRUN_CACHE) per run;
                 compile_s, train_s and steps_per_s from the run folder's summary.json
                 (train_s: all chunks incl. the held-out evaluations, after compilation).
                 trace_every=1: per-time-step traces every step (|dL/dh_t|, the Jacobian
                 estimate = one more VJP through the scan, spectral radius and sigma_max of
                 W_rec = one host callback); trace_every=100: one traced step in 100.
  PyTorch        benchmarks/torch_rnn.py, the same training with |dL/dh_t| for every t and
                 the weight-gradient norms at every step, 1 thread and PyTorch's default;
                 impl=loop (the recurrence as a Python loop, retain_grad on every h_t: the
                 true dL/dh_t) and impl=fused (one nn.RNN / nn.LSTM call: faster, but its
                 output's gradient is not dL/dh_t, so it does NOT do the same work; shown as
                 PyTorch's floor). Held-out evaluation every 15 steps, as vgrun's chunks.
  diagnosis      (unless --no-diagnose) one process per model, XLA on one core as in the
                 CLI: ms per training step of vgrun's own chunk program (best of 2 chunks of
                 100 steps after a warm-up) with parts of the trace switched off by
                 monkeypatching vgrun.temporal in that process (the package is not changed),
                 the held-out evaluation, the host callback alone, and a bare lax.scan
                 training step of the same size (the floor) with several scan `unroll`s.

Matmul FLOPs per plain training step (forward + backward): 3 * T * 2 * B * H * gH,
g = 1 (rnn) or 4 (lstm); the traced step adds 2 * T * 2 * B * H * gH (the VJP's
forward and its backward through h only).
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
    return [exe] if exe else [sys.executable, "-c", "from vgrun.cli import main; main()"]


def vgrun_job(model: str, every: int, steps: int, work: Path) -> dict:
    name = f"{model}-every{every}"
    run_dir, cache = work / name, work / f"cache-{name}"
    args = [f"model={model}", "data=adding", f"width={H}", f"batch_size={B}", f"seq_len={T}", f"steps={steps}",
            f"trace_every={every}", "optimizer=adam", "optimizer.lr=0.001"]
    cmd = vgrun_cmd() + args + [f"hydra.run.dir={run_dir}"]
    env = dict(os.environ, VGRUN_CACHE=str(cache))
    t = timed(cmd, env=env, before=lambda: shutil.rmtree(cache, ignore_errors=True))
    summary = json.loads((run_dir / "summary.json").read_text())
    tm = summary["timing"]
    return {"compile_s": tm["compile_s"], "train_s": tm["train_s"], "steps_per_s": tm["steps_per_s"],
            "wall_s": t["wall_s"], "rss_mib": t["rss_mib"], "other_cores": t["others"],
            "final_train_loss": summary["final"]["train_loss"], "cmd": "vgrun " + " ".join(args)}


def torch_job(model: str, impl: str, threads: int, steps: int) -> dict:
    cmd = [sys.executable, str(HERE / "torch_rnn.py"), f"--model={model}", f"--impl={impl}", f"--threads={threads}",
           f"--steps={steps}", f"--hidden={H}", f"--batch={B}", f"--seq-len={T}", "--eval-every=15"]
    t = timed(cmd)
    return dict(last_json(t["text"]), wall_s=t["wall_s"], rss_mib=t["rss_mib"], other_cores=t["others"],
                cmd=" ".join(["python", "benchmarks/torch_rnn.py"] + cmd[2:]))


# The diagnosis: vgrun's chunk program with parts of the trace switched off, and a bare floor.
CHILD = r"""
import json, os, sys, time
allowed = os.sched_getaffinity(0); os.sched_setaffinity(0, {min(allowed)})  # XLA on one thread, as the CLI
import jax; jax.devices(); os.sched_setaffinity(0, allowed)
import numpy as np, jax.numpy as jnp, optax
from hydra import compose, initialize_config_module
from vgrun.config import register
from vgrun.cli import to_config
from vgrun import temporal, train as TR, tasks
from vgrun.models import rnn as R
from vgrun.traces import safe_norm

model, H, B, T, unrolls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split(",")
register()
def config(every):
    with initialize_config_module("vgrun.conf", version_base=None):
        d = compose("config", overrides=[f"model={model}", "data=adding", f"width={H}", f"batch_size={B}",
                    f"seq_len={T}", "steps=300", f"trace_every={every}", "chunks=3", "optimizer=adam",
                    "optimizer.lr=0.001"])
    return to_config(d)

def best_of(f, n):
    out = f(); jax.block_until_ready(out)
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter(); jax.block_until_ready(f()); best = min(best, time.perf_counter() - t)
    return best

def chunk_ms(every):
    # ms per step of vgrun's chunk program (100 steps, 1 held-out evaluation), and its compile time
    cfg = config(every)
    prog = TR.make_train(cfg)
    d = prog.problem.arrays
    carry = jax.block_until_ready(prog.init(jax.random.PRNGKey(0)))
    t = time.perf_counter(); chunk = prog.chunk.lower(carry, d).compile(); comp = time.perf_counter() - t
    state = {"c": carry}
    def run():
        state["c"], out = chunk(state["c"], d)
        return out
    ev = jax.jit(prog.evaluate)
    ev_s = best_of(lambda: ev(state["c"], d), 5)
    return {"ms": 1e3 * best_of(run, 2) / prog.chunk_steps, "compile_s": comp, "eval_ms": 1e3 * ev_s,
            "chunk_steps": prog.chunk_steps}

orig_trace, orig_spectral = temporal.trace_step, temporal.spectral
def no_spectral(w):
    z = jnp.zeros(w.shape[:-2], w.dtype); return z, z
def trace_no_jac(model_, params, x, grads, probe_grads, updates, key, batch):
    # the same trace with the Jacobian-product VJP replaced by zeros
    class M:  # hidden() returns zeros: the vjp becomes trivial and XLA drops it
        hidden = staticmethod(lambda p, x_, pr: jnp.zeros((T, batch, H), probe_grads.dtype) + 0 * pr[-1])
    return orig_trace(M, params, x, grads, probe_grads, updates, key, batch)

res = {"model": model}
res["traced"] = chunk_ms(1)
temporal.spectral = no_spectral
res["traced_no_spectral"] = chunk_ms(1)
temporal.trace_step = trace_no_jac
res["traced_no_spectral_no_jacobian"] = chunk_ms(1)
temporal.spectral = orig_spectral
res["traced_no_jacobian"] = chunk_ms(1)
temporal.trace_step = orig_trace
res["every100"] = chunk_ms(100)

# the host callback alone: numpy's eigvals + svd of one H x H block (what vgrun.models.rnn.spectral runs)
a = np.random.default_rng(0).normal(size=(1, H, H)) / np.sqrt(H)
def host():
    np.abs(np.linalg.eigvals(a)).max(-1); np.linalg.svd(a, compute_uv=False)
res["host_eig_svd_ms"] = 1e3 * min(best_of(host, 20) for _ in range(3))
def host_eig():
    np.abs(np.linalg.eigvals(a)).max(-1)
def host_svd():
    np.linalg.svd(a, compute_uv=False)
res["host_eig_ms"] = 1e3 * best_of(host_eig, 20)
res["host_svd_ms"] = 1e3 * best_of(host_svd, 20)
w = jnp.asarray(a, jnp.float32)
cb = jax.jit(lambda w: R.spectral(w))
res["callback_roundtrip_ms"] = 1e3 * best_of(lambda: cb(w), 20)
sv = jax.jit(lambda w: jnp.linalg.svd(w, compute_uv=False)[..., 0])
res["device_svd_ms"] = 1e3 * best_of(lambda: sv(w), 20)
def power30(w):  # sigma_max by 30 power iterations on W^T W, on the device
    m = w[0]
    v = jax.lax.fori_loop(0, 30, lambda i, v: (lambda u: u / jnp.linalg.norm(u))(m.T @ (m @ v)),
                          jnp.ones((m.shape[0],), m.dtype))
    return jnp.linalg.norm(m @ v)
pi = jax.jit(power30)
res["device_power_iter30_ms"] = 1e3 * best_of(lambda: pi(w), 20)

# the floor: a bare lax.scan training step of the same size (no probes, no traces), Adam, adding data
g = 4 if model == "lstm" else 1
task = tasks.TASKS["adding"]
def floor(unroll, steps=100):
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    p = {"wi": jax.random.normal(k[0], (2, g * H)) * 0.1, "wr": jax.random.normal(k[1], (H, g * H)) / np.sqrt(H),
         "b": jnp.zeros((g * H,)), "wo": jax.random.normal(k[2], (H, 1)) / np.sqrt(H), "bo": jnp.zeros((1,))}
    def cell(w, c, a):
        if g == 1:
            h = jnp.tanh(jnp.dot(c, w) + a); return h, None
        h, cc = c
        z = jnp.dot(h, w) + a
        i, f, gg, o = (z[:, j * H:(j + 1) * H] for j in range(4))
        cc = jax.nn.sigmoid(f) * cc + jax.nn.sigmoid(i) * jnp.tanh(gg)
        return (jax.nn.sigmoid(o) * jnp.tanh(cc), cc), None
    def loss(p, x, y):
        a = jnp.dot(jnp.swapaxes(x, 0, 1), p["wi"]) + p["b"]
        z = jnp.zeros((B, H))
        c, _ = jax.lax.scan(lambda c, a_: cell(p["wr"], c, a_), z if g == 1 else (z, z), a, unroll=unroll)
        h = c if g == 1 else c[0]
        return jnp.mean(jnp.square(h @ p["wo"] + p["bo"] - y))
    opt = optax.adam(1e-3)
    def step(carry, i):
        p, s = carry
        x, y = task.sample(jax.random.fold_in(jax.random.PRNGKey(1), i), B, T)
        l, gr = jax.value_and_grad(loss)(p, x, y)
        u, s = opt.update(gr, s, p)
        return (optax.apply_updates(p, u), s), l
    run = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(steps)))
    c0 = (p, opt.init(p))
    t = time.perf_counter(); comp = run.lower(c0).compile(); ct = time.perf_counter() - t
    return {"ms": 1e3 * best_of(lambda: comp(c0), 2) / steps, "compile_s": ct}
res["floor"] = {u: floor(int(u)) for u in unrolls}
print(json.dumps(res))
"""


def diagnose_job(model: str, unrolls: list[int]) -> dict:
    cmd = [sys.executable, "-c", CHILD, model, str(H), str(B), str(T), ",".join(map(str, unrolls))]
    t = timed(cmd, env=dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false"))
    return dict(last_json(t["text"]), other_cores=t["others"])


# ---------------------------------------------------------------------------- tables


def flops(model: str, traced: bool) -> float:
    fwd = T * 2 * B * H * GATES[model] * H
    return (5 if traced else 3) * fwd


def rows_vgrun(res: dict, models: list[str]):
    head = ["model", "trace_every", "compile s (cold cache)", "train s", "steps/s", "ms/step",
            "matmul GFLOP/s", "wall s", "final loss"]
    rows = []
    for m in models:
        for every in (1, 100):
            v = res[m]["vgrun"][every]
            traced_share = 1.0 / every
            f = traced_share * flops(m, True) + (1 - traced_share) * flops(m, False)
            rows.append([m, str(every), f"{v['compile_s']:.2f}", f"{v['train_s']:.1f}", f"{v['steps_per_s']:.1f}",
                         f"{1e3 / v['steps_per_s']:.1f}", f"{f * v['steps_per_s'] / 1e9:.1f}", f"{v['wall_s']:.1f}",
                         f"{v['final_train_loss']:.4f}"])
    return head, rows


def torch_label(impl: str, threads: int) -> str:
    return f"torch {impl}, {'1 thread' if threads == 1 else 'default threads'}"


def rows_torch(res: dict, models: list[str], variants):
    head = ["model", "PyTorch variant", "steps/s", "ms/step", "dL/dh_t nonzero steps",
            "vgrun every=1 ×", "vgrun every=100 ×"]
    rows = []
    for m in models:
        v1, v100 = res[m]["vgrun"][1]["steps_per_s"], res[m]["vgrun"][100]["steps_per_s"]
        for impl, threads in variants:
            t = res[m]["torch"][f"{impl}{threads}"]
            rows.append([m, torch_label(impl, threads) + (" (not dL/dh_t)" if impl == "fused" else ""),
                         f"{t['steps_per_s']:.1f}", f"{t['ms_per_step']:.1f}",
                         f"{t['delta_nonzero_steps']} of {T}", f"{v1 / t['steps_per_s']:.2f}×",
                         f"{v100 / t['steps_per_s']:.2f}×"])
    return head, rows


def rows_targets(res: dict, models: list[str], variants):
    head = ["target", "measured", "met"]
    rows = []
    for m in models:
        same = {k: t for k, t in res[m]["torch"].items() if k.startswith("loop")}
        best_k = max(same, key=lambda k: same[k]["steps_per_s"])
        best = same[best_k]["steps_per_s"]
        label = torch_label("loop", int(best_k[4:]))
        for every in (1, 100):
            r = res[m]["vgrun"][every]["steps_per_s"] / best
            rows.append([f"{m}, trace_every={every}: vgrun >= {TARGET}× PyTorch (same work, its fastest variant)",
                         f"{r:.2f}× ({label})", "yes" if r >= TARGET else "NO"])
        fused = max((t["steps_per_s"] for k, t in res[m]["torch"].items() if k.startswith("fused")), default=None)
        if fused:
            r = res[m]["vgrun"][100]["steps_per_s"] / fused
            rows.append([f"{m}, trace_every=100 vs PyTorch's fused {m} (no dL/dh_t)", f"{r:.2f}×",
                         "yes" if r >= TARGET else "NO"])
    return head, rows


def rows_diagnosis(res: dict, models: list[str]):
    head = ["model", "what (ms per training step, XLA 1 thread)", "ms", "vs traced"]
    rows = []
    for m in models:
        d = res[m].get("diagnosis")
        if not d:
            continue
        full = d["traced"]["ms"]
        items = [
            ("traced every step (trace_every=1)", d["traced"]["ms"]),
            ("  without the spectral host callback", d["traced_no_spectral"]["ms"]),
            ("  without the Jacobian VJP", d["traced_no_jacobian"]["ms"]),
            ("  without both (|dL/dh_t| + weight norms only = PyTorch's work)", d["traced_no_spectral_no_jacobian"]["ms"]),
            ("trace_every=100", d["every100"]["ms"]),
            ("held-out evaluation (1024 seq.), per call", d["traced"]["eval_ms"]),
            ("  per step at 15 steps per chunk (CLI, trace_every=1)", d["traced"]["eval_ms"] / 15),
            ("host callback alone: numpy eigvals + svd of 128x128", d["host_eig_svd_ms"]),
            ("  eigvals / svd", None),
            ("  jitted pure_callback round trip (eig + svd)", d["callback_roundtrip_ms"]),
            ("  device jnp.linalg.svd instead (sigma_max only)", d["device_svd_ms"]),
            ("  device power iteration, 30 its (sigma_max only)", d["device_power_iter30_ms"]),
        ] + [(f"floor: bare lax.scan train step, unroll={u}", f["ms"]) for u, f in d["floor"].items()]
        for name, ms in items:
            if name.strip() == "eigvals / svd":
                rows.append([m, name, f"{d['host_eig_ms']:.2f} / {d['host_svd_ms']:.2f}", ""])
                continue
            rows.append([m, name, f"{ms:.2f}", f"{ms / full:.2f}"])
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
    lines += ["| " + " | ".join(row) + " |" for row in rows]
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
    ap.add_argument("--impls", nargs="+", default=["loop", "fused"], choices=["loop", "fused"])
    ap.add_argument("--no-diagnose", action="store_true")
    ap.add_argument("--unrolls", type=int, nargs="+", default=[1, 2, 5, 10], help="scan unrolls of the floor")
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
                    console.print(f"{m}: vgrun trace_every={every} (repeat {r + 1}/{args.repeat})", style="dim")
                    rep["vgrun"][every] = vgrun_job(m, every, args.steps, Path(tmp) / f"r{r}")
                for impl, threads in variants:
                    console.print(f"{m}: {torch_label(impl, threads)} (repeat {r + 1}/{args.repeat})", style="dim")
                    rep["torch"][f"{impl}{threads}"] = torch_job(m, impl, threads, args.steps)
                reps.append(rep)
            res[m] = {side: {k: median_of([rep[side][k] for rep in reps]) for k in reps[0][side]}
                      for side in ("vgrun", "torch")}
            res[m]["repeats"] = reps
            if not args.no_diagnose:
                console.print(f"{m}: diagnosis", style="dim")
                res[m]["diagnosis"] = diagnose_job(m, args.unrolls)
    elapsed = time.perf_counter() - t_start

    info = machine()
    header = (f"{info['cpu']}, {info['cores']} cores; python {info['python']}, jax {info['jax']}, torch {info['torch']}; "
              f"hidden {H}, batch {B}, seq_len {T}, {args.steps} steps, repeat {args.repeat} (medians); "
              f"benchmark took {elapsed / 60:.1f} min; other processes used at most {max(NOISE):.2f} cores "
              f"during any timing")
    tables = [
        (f"vgrun CLI, data=adding, hidden {H}, batch {B}, T={T}, adam 1e-3, {args.steps} steps", *rows_vgrun(res, args.models)),
        ("PyTorch eager (benchmarks/torch_rnn.py) and vgrun / PyTorch throughput", *rows_torch(res, args.models, variants)),
        ("targets", *rows_targets(res, args.models, variants)),
    ]
    if not args.no_diagnose:
        tables.append(("where vgrun's time goes (one process per model, XLA on 1 core)",
                       *rows_diagnosis(res, args.models)))
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
