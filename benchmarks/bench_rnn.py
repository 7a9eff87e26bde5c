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


def eval_period(steps: int, every: int, chunks: int = 20) -> int:
    """Steps per vgrun chunk (one held-out evaluation each): vgrun.train.n_chunks_for with the default chunks."""
    blocks = steps // every
    n = min((d for d in range(1, blocks + 1) if blocks % d == 0), key=lambda d: (abs(d - chunks), d))
    return steps // n


def torch_job(model: str, impl: str, threads: int, steps: int, extra: tuple = ()) -> dict:
    cmd = [sys.executable, str(HERE / "torch_rnn.py"), f"--model={model}", f"--impl={impl}", f"--threads={threads}",
           f"--steps={steps}", f"--hidden={H}", f"--batch={B}", f"--seq-len={T}",
           *(extra or (f"--eval-every={eval_period(steps, 1)}",))]
    t = timed(cmd)
    return dict(last_json(t["text"]), wall_s=t["wall_s"], rss_mib=t["rss_mib"], other_cores=t["others"],
                cmd=" ".join(["python", "benchmarks/torch_rnn.py"] + cmd[2:]))


# ---------------------------------------------------------------------------- the diagnosis (child process)

# vgrun/models/rnn.py's `hidden`, changed to compute U u_t + b inside the time scan (the proposal
# measured below); applied to a copy of the module's source in the child process only.
PROJ_OLD = ('            a = jnp.dot(seq, w_in) + params["rec"]["b"][l]  # [T, B, gH]: one matmul for all steps\n',
            '            _, seq = jax.lax.scan(lambda c, ap: cell(w, c, *ap), carry0, (a, p))\n')
PROJ_NEW = ('            b_l = params["rec"]["b"][l]\n',
            '            _, seq = jax.lax.scan(lambda c, sp: cell(w, c, jnp.dot(sp[0], w_in) + b_l, sp[1]), carry0, (seq, p))\n')


def diagnose_child(model: str, unrolls: list[int]) -> dict:
    """Runs in a fresh process, XLA started on one core (as vgrun's CLI). Returns ms per step of variants."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    import jax

    jax.devices()
    os.sched_setaffinity(0, allowed)
    import inspect

    import jax.numpy as jnp
    import numpy as np
    import optax
    from hydra import compose, initialize_config_module

    from vgrun import tasks, temporal
    from vgrun import train as TR
    from vgrun.cli import to_config
    from vgrun.config import register
    from vgrun.models import rnn as R

    register()

    def config(every):
        with initialize_config_module("vgrun.conf", version_base=None):
            d = compose("config", overrides=[f"model={model}", "data=adding", f"width={H}", f"batch_size={B}",
                                             f"seq_len={T}", "steps=300", f"trace_every={every}", "chunks=3",
                                             "optimizer=adam", "optimizer.lr=0.001"])
        return to_config(d)

    def best_of(f, n):
        jax.block_until_ready(f())
        best = float("inf")
        for _ in range(n):
            t = time.perf_counter()
            jax.block_until_ready(f())
            best = min(best, time.perf_counter() - t)
        return best

    def chunk_ms(every):
        """vgrun's chunk program (100 steps, 1 held-out evaluation): ms per step, compile s, evaluation ms."""
        prog = TR.make_train(config(every))
        d = prog.problem.arrays
        carry = jax.block_until_ready(prog.init(jax.random.PRNGKey(0)))
        t = time.perf_counter()
        chunk = prog.chunk.lower(carry, d).compile()
        comp = time.perf_counter() - t
        state = {"c": carry}

        def run():
            state["c"], out = chunk(state["c"], d)
            return out

        ev = best_of(lambda: prog.evaluate(state["c"], d), 3)
        return {"ms": 1e3 * best_of(run, 2) / prog.chunk_steps, "compile_s": comp, "eval_ms": 1e3 * ev}

    orig_trace, orig_spectral, orig_make = temporal.trace_step, temporal.spectral, R.make

    def no_spectral(w):
        z = jnp.zeros(w.shape[:-2], w.dtype)
        return z, z

    def trace_no_jac(model_, params, x, grads, probe_grads, updates, key, batch):
        class M:  # hidden() -> a constant: the Jacobian VJP becomes trivial
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
    src = inspect.getsource(R)
    if all(o in src for o in PROJ_OLD):  # the proposal: U u_t + b inside the scan
        for o, n in zip(PROJ_OLD, PROJ_NEW):
            src = src.replace(o, n)
        ns = {"__name__": "vgrun.models.rnn_proj_in_scan"}
        exec(compile(src, "rnn_proj_in_scan", "exec"), ns)
        R.make = ns["make"]
        res["proj_in_scan_traced"] = chunk_ms(1)
        res["proj_in_scan_every100"] = chunk_ms(100)
        R.make = orig_make

    # the host callback alone: numpy eigvals + svd of one H x H block (what vgrun.models.rnn.spectral runs)
    a = np.random.default_rng(0).normal(size=(1, H, H)) / np.sqrt(H)
    res["host_eig_ms"] = 1e3 * best_of(lambda: np.abs(np.linalg.eigvals(a)).max(-1), 20)
    res["host_svd_ms"] = 1e3 * best_of(lambda: np.linalg.svd(a, compute_uv=False), 20)
    w = jnp.asarray(a, jnp.float32)
    cb = jax.jit(R.spectral)
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

    # A replica of the recurrent training step (same cell, probes, Adam, adding data) to measure
    # changes that would touch vgrun/train.py: ms per step of a jitted scan of 50 steps.
    g = GATES[model]
    task = tasks.TASKS["adding"]
    sig = jax.nn.sigmoid

    def cell(w, c, a, p):
        if g == 1:
            hh = jnp.tanh(jnp.dot(c, w) + a) + p
            return hh, hh
        hh, cc = c
        z = jnp.dot(hh, w) + a
        i, f, gg, o = (z[:, j * H:(j + 1) * H] for j in range(4))
        cc = sig(f) * cc + sig(i) * jnp.tanh(gg)
        hh = sig(o) * jnp.tanh(cc) + p
        return (hh, cc), hh

    def hidden(p, x, probes, in_scan, unroll):
        seq = jnp.swapaxes(x, 0, 1)
        z = jnp.zeros((B, H))
        c0 = z if g == 1 else (z, z)
        if in_scan:
            body = lambda c, sp: cell(p["wr"], c, jnp.dot(sp[0], p["wi"]) + p["b"], sp[1])  # noqa: E731
            return jax.lax.scan(body, c0, (seq, probes), unroll=unroll)[1]
        a = jnp.dot(seq, p["wi"]) + p["b"]
        return jax.lax.scan(lambda c, ap: cell(p["wr"], c, *ap), c0, (a, probes), unroll=unroll)[1]

    k = jax.random.split(jax.random.PRNGKey(0), 3)
    p0 = {"wi": jax.random.normal(k[0], (2, g * H)) * 0.3, "wr": jax.random.normal(k[1], (H, g * H)) / np.sqrt(H),
          "b": jnp.zeros((g * H,)), "wo": jax.random.normal(k[2], (H, 1)) / np.sqrt(H), "bo": jnp.zeros((1,))}
    opt = optax.adam(1e-3)

    def nrm(x):
        return jnp.sqrt(jnp.sum(x * x, (1, 2)))

    def replica(mode, in_scan, unroll=1, steps=50):
        """mode: plain (no probes) | probes (|dL/dh_t| only) | separate (+ Jacobian by its own jax.vjp, as
        vgrun) | shared (+ Jacobian from the same forward: one jax.vjp, its backward applied twice)."""
        def step(carry, i):
            p, s = carry
            key = jax.random.fold_in(jax.random.PRNGKey(1), i)
            x, y = task.sample(key, B, T)
            v = jax.random.normal(jax.random.fold_in(key, 1), (B, H))
            v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
            zero = jnp.zeros((T, B, H))

            def f(p, pr):
                hl = hidden(p, x, pr, in_scan, unroll)[-1]
                return jnp.mean(jnp.square(hl @ p["wo"] + p["bo"] - y)), hl

            if mode == "plain":
                gr = jax.grad(lambda p: f(p, zero)[0])(p)
                out = jnp.zeros((2, T))
            elif mode == "shared":
                (_, hl), vjp = jax.vjp(f, p, zero)
                gr, gp = vjp((jnp.ones(()), jnp.zeros_like(hl)))
                _, jg = vjp((jnp.zeros(()), v))
                out = jnp.stack([nrm(gp), nrm(jg)])
            else:
                gr, gp = jax.grad(lambda p, pr: f(p, pr)[0], argnums=(0, 1))(p, zero)
                jg = gp
                if mode == "separate":
                    (jg,) = jax.vjp(lambda pr: hidden(p, x, pr, in_scan, unroll)[-1], zero)[1](v)
                out = jnp.stack([nrm(gp), nrm(jg)])
            u, s = opt.update(gr, s, p)
            return (optax.apply_updates(p, u), s), out

        run = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(steps)))
        c0 = (p0, opt.init(p0))
        t = time.perf_counter()
        comp = run.lower(c0).compile()
        ct = time.perf_counter() - t
        return {"ms": 1e3 * best_of(lambda: comp(c0), 2) / steps, "compile_s": ct}

    res["replica"] = {}
    for in_scan in (False, True):
        for mode in ("plain", "probes", "separate", "shared"):
            res["replica"][f"{mode},{'in_scan' if in_scan else 'precomputed'},1"] = replica(mode, in_scan)
    for u in unrolls:
        if u != 1:
            res["replica"][f"plain,precomputed,{u}"] = replica("plain", False, u)

    # the held-out forward (1024 sequences): as vgrun (U u_t precomputed, every h_t stacked, zero probes
    # added) against U u_t in the scan and only the last state kept
    xt, _ = task.sample(jax.random.PRNGKey(2), 1024, T)
    zt = jnp.zeros((T, 1024, H))

    def fwd_now(x):
        seq = jnp.swapaxes(x, 0, 1)
        a = jnp.dot(seq, p0["wi"]) + p0["b"]
        z = jnp.zeros((1024, H))
        return jax.lax.scan(lambda c, ap: cell(p0["wr"], c, *ap), z if g == 1 else (z, z), (a, zt))[1][-1]

    def fwd_lean(x):
        z = jnp.zeros((1024, H))
        body = lambda c, xs: (cell(p0["wr"], c, jnp.dot(xs, p0["wi"]) + p0["b"], 0.0)[0], None)  # noqa: E731
        c = jax.lax.scan(body, z if g == 1 else (z, z), jnp.swapaxes(x, 0, 1))[0]
        return c if g == 1 else c[0]

    for name, f in (("eval_forward_now", fwd_now), ("eval_forward_lean", fwd_lean)):
        jf = jax.jit(f)
        res[name + "_ms"] = 1e3 * best_of(lambda: jf(xt), 3)
    return res


def diagnose_job(model: str, unrolls: list[int]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-diagnose", model,
           "--unrolls", *map(str, unrolls)]
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
    head = ["model", "PyTorch variant", "evaluation every", "steps/s", "ms/step", "dL/dh_t nonzero steps",
            "vgrun every=1 ×", "vgrun every=100 ×"]
    rows = []
    for m in models:
        v1, v100 = res[m]["vgrun"][1]["steps_per_s"], res[m]["vgrun"][100]["steps_per_s"]
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
            r = res[m]["vgrun"][every]["steps_per_s"] / best
            rows.append([f"{m}, trace_every={every}: vgrun >= {TARGET}× PyTorch loop with norms every step "
                         f"(its fastest thread setting)", f"{r:.2f}× ({label})", "yes" if r >= TARGET else "NO"])
        ev = {th: res[m]["torch"][f"loop{th}_ev100"] for _, th in variants if f"loop{th}_ev100" in res[m]["torch"]}
        if ev:
            th = max(ev, key=lambda k: ev[k]["steps_per_s"])
            r = res[m]["vgrun"][100]["steps_per_s"] / ev[th]["steps_per_s"]
            rows.append([f"{m}, trace_every=100: the same, both evaluating every {eval_period(steps, 100)} steps",
                         f"{r:.2f}× ({torch_label('loop', th)})", "yes" if r >= TARGET else "NO"])
        fused = max((res[m]["torch"][f"{i}{th}"]["steps_per_s"] for i, th in variants if i == "fused"), default=None)
        if fused:
            r = res[m]["vgrun"][100]["steps_per_s"] / fused
            rows.append([f"{m}, trace_every=100 vs PyTorch's fused {m} (no dL/dh_t)", f"{r:.2f}×",
                         "yes" if r >= TARGET else "NO"])
    return head, rows


def rows_diagnosis(res: dict, models: list[str]):
    head = ["model", "what", "ms (per step unless said)", "vs traced step"]
    rows = []
    for m in models:
        d = res[m].get("diagnosis")
        if not d:
            continue
        full = d["traced"]["ms"]
        items = [
            ("vgrun chunk program, 100 steps + 1 held-out evaluation per chunk:", None),
            ("traced every step (trace_every=1)", d["traced"]["ms"]),
            ("  without the spectral host callback", d["traced_no_spectral"]["ms"]),
            ("  without the Jacobian VJP", d["traced_no_jacobian"]["ms"]),
            ("  without both (|dL/dh_t| + weight norms only, PyTorch's work)", d["traced_no_spectral_no_jacobian"]["ms"]),
            ("trace_every=100", d["every100"]["ms"]),
        ]
        if "proj_in_scan_traced" in d:
            items += [("proposal: U u_t + b inside the scan, trace_every=1", d["proj_in_scan_traced"]["ms"]),
                      ("proposal: U u_t + b inside the scan, trace_every=100", d["proj_in_scan_every100"]["ms"])]
        items += [
            ("held-out evaluation (1024 sequences), ms per call:", None),
            ("  vgrun now (CLI, trace_every=1: one call per 15 steps)", d["traced"]["eval_ms"]),
        ]
        if "proj_in_scan_traced" in d:
            items.append(("  with U u_t + b inside the scan", d["proj_in_scan_traced"]["eval_ms"]))
        items += [("  replica forward as vgrun (U u_t precomputed, all h_t stacked, zero probes)", d["eval_forward_now_ms"]),
                  ("  replica forward, U u_t in the scan, last state only", d["eval_forward_lean_ms"])]
        items += [
            ("spectral radius + sigma_max, ms per call:", None),
            ("  numpy eigvals / svd of 128x128 float64 (host)", f"{d['host_eig_ms']:.2f} / {d['host_svd_ms']:.2f}"),
            ("  jitted pure_callback round trip (both)", d["callback_roundtrip_ms"]),
            ("  on the device: jnp.linalg.svd (sigma_max only)", d["device_svd_ms"]),
            ("  on the device: 30 power iterations (sigma_max only)", d["device_power_iter30_ms"]),
            ("replica step (jitted scan of 50 steps; no evaluation, no norms but |dL/dh_t|):", None),
        ]
        names = {"plain": "plain training step", "probes": "+ |dL/dh_t| (probes)",
                 "separate": "+ Jacobian by its own VJP (as vgrun)", "shared": "+ Jacobian sharing the forward"}
        for key, r in d["replica"].items():
            mode, where, unroll = key.split(",")
            label = f"  {names[mode]}, U u_t {'in the scan' if where == 'in_scan' else 'precomputed'}"
            items.append((label + (f", unroll={unroll}" if unroll != "1" else ""), r["ms"]))
        t = res[m]["torch"]
        items.append(("PyTorch loop, 1 thread, same 300 steps:", None))
        for key, label in (("loop1_plain", "  plain (no norms, no evaluation)"), ("loop1_noeval", "  + |dL/dh_t| and weight norms"),
                           ("loop1", "  + held-out evaluation every 15 steps (the benchmark)")):
            if key in t:
                items.append((label, t[key]["ms_per_step"]))
        per_call = False
        for name, ms in items:
            if ms is None:
                per_call = "per call" in name
                rows.append([m, f"[b]{name}[/b]", "", ""])
            elif isinstance(ms, str):
                rows.append([m, name, ms, ""])
            else:
                rows.append([m, name, f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}", "" if per_call else f"{ms / full:.2f}"])
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
    ap.add_argument("--impls", nargs="+", default=["loop", "fused"], choices=["loop", "fused"])
    ap.add_argument("--no-diagnose", action="store_true")
    ap.add_argument("--unrolls", type=int, nargs="+", default=[1, 5], help="scan unrolls tried in the replica")
    ap.add_argument("--child-diagnose", choices=list(GATES), help=argparse.SUPPRESS)
    ap.add_argument("--quiet-cores", type=float, default=QUIET["cores"])
    ap.add_argument("--out", type=Path, default=HERE / "results_rnn")
    args = ap.parse_args()
    if args.child_diagnose:
        print(json.dumps(diagnose_child(args.child_diagnose, args.unrolls)))
        return
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
                for threads in args.threads:  # evaluating as rarely as vgrun with trace_every=100
                    ev = eval_period(args.steps, 100)
                    console.print(f"{m}: {torch_label('loop', threads)}, evaluation every {ev} steps", style="dim")
                    rep["torch"][f"loop{threads}_ev100"] = torch_job(m, "loop", threads, args.steps, (f"--eval-every={ev}",))
                reps.append(rep)
            res[m] = {side: {k: median_of([rep[side][k] for rep in reps]) for k in reps[0][side]}
                      for side in ("vgrun", "torch")}
            res[m]["repeats"] = reps
            if not args.no_diagnose:
                for key, extra in (("loop1_noeval", ("--eval-every=0",)), ("loop1_plain", ("--eval-every=0", "--no-norms"))):
                    console.print(f"{m}: torch loop, 1 thread, {' '.join(extra)}", style="dim")
                    res[m]["torch"][key] = torch_job(m, "loop", 1, args.steps, extra)
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
        ("targets", *rows_targets(res, args.models, variants, args.steps)),
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
