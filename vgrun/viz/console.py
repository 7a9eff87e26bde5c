"""What a run prints: the per-layer gradient table, final metrics, the verdict and the files."""

from __future__ import annotations

import numpy as np
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from vgrun.science.verdict import explain
from vgrun.viz.format import fmt, percent

COLORS = {"vanishing": "bold red", "exploding": "bold magenta", "healthy": "bold green", "not learning": "bold yellow",
          "diverged": "bold magenta"}


def _e(x) -> str:
    return fmt(None if x is None else float(x), ".1e", missing="n/a")


def layer_table(cfg, traces, names: list | None = None) -> Table:
    """First, middle and last hidden layer and the output layer, at step 0 and at the end;
    names: the layers' own (a custom network's taps)."""
    depth, last = cfg.depth, len(traces.delta) - 1
    rows = {0: "first", depth // 2: "middle", depth - 1: "last", depth: "output"}
    if names:
        rows = {l: names[l] for l in rows}
    weights = bool(np.isfinite(traces.grad_w).any())  # a custom network's layers are taps: no weights
    table = Table(
        title=f"Gradient norms per layer, step 0 (start) and step {last * cfg.trace_every} (end)",
        caption=("|δ| = |dL/dz| (z: pre-activation; RMS over the batch), |dW| = |dL/dW|, "
                 "upd/W = |ΔW|/|W|, sat = saturated units") if weights else
        "|δ| = |dL/dh| at each tap (h: the tapped activation; RMS over the batch)",
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    stream = bool(np.isfinite(traces.stream).any())  # a residual network: its stream beside the branches
    cols = ("layer", "|δ| start", "|δ| end") + (("|δh| start", "|δh| end") if stream else ()) + ((
        "|dW| start", "|dW| end", "upd/W", "sat") if weights else ())
    for col in cols:
        table.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    if stream:
        table.caption += "; |δh| = |dL/dh| on the residual stream at the block's output"
    for l, name in rows.items():
        sat = traces.saturated[last, l]
        table.add_row(
            f"{l:>3} {name}",
            _e(traces.delta[0, l]), _e(traces.delta[last, l]),
            *((_e(traces.stream[0, l]), _e(traces.stream[last, l])) if stream else ()),
            *((_e(traces.grad_w[0, l]), _e(traces.grad_w[last, l]), _e(traces.update_ratio[last, l]),
               "-" if not np.isfinite(sat) else f"{100 * sat:.0f}%") if weights else ()),
        )
    return table


def _blocks(blocks: list) -> str:
    """1, 2, 3, ... 55 (55 blocks): a long list shortened."""
    if len(blocks) <= 8:
        return ", ".join(map(str, blocks))
    return ", ".join(map(str, blocks[:4])) + ", ..., " + ", ".join(map(str, blocks[-2:])) + f" ({len(blocks)} blocks)"


def _headline(d: dict) -> str:
    """The headline, its verdict word coloured; the learning line with the constant prediction's loss."""
    learn = d["learning"]
    line = f"[{COLORS[d['verdict']]}]{d['headline']}[/]"
    base = (f"loss {_e(learn['loss_initial'])} -> {_e(learn['loss_final'])} (train), held-out "
            f"{_e(learn['test_loss'])}; the constant prediction's loss {_e(learn['baseline_loss'])}")
    if learn["final_over_baseline"] is not None:
        base += f" (train {_e(learn['final_over_baseline'])}x, held-out {_e(learn['test_over_baseline'])}x)"
    return line + "\n" + base


def _panel(lines: list[str], d: dict) -> Panel:
    """The diagnosis panel: the given lines, then clipping and non-finite counts if any."""
    clip = d.get("clipping")
    if clip:
        lines.append(f"clipping at {clip['threshold']:.3g}: fired on {100 * clip['fired_share']:.1f}% of steps; "
                     f"pre-clip norm median {_e(clip['median_norm'])}, max {_e(clip['max_norm'])}")
    bad = {k: n for k, n in d["nonfinite"].items() if n}
    if bad:
        lines.append("[magenta]non-finite values kept[/]: " + ", ".join(f"{k}={n}" for k, n in bad.items()))
    return Panel("\n".join(lines), title="diagnosis", title_align="left")


def verdict_panel(summary: dict) -> Panel:
    d = summary["diagnosis"]
    lines = [_headline(d), explain(d)]
    lines.append(f"per-layer factor |grad_l|/|grad_l+1| at step 0: {_e(d['per_layer_factor_init'])}")
    dead = d.get("dead_branches")
    if dead:
        lines.append(f"dead residual branches (|dL/dz| < {dead['threshold']:.0e} x the stream's): "
                     f"{100 * dead['share_init']:.0f}% at step 0, {100 * dead['share_final']:.0f}% at the end"
                     + (f" (blocks {_blocks(dead['final'])})" if dead["final"] else ""))
    th = d["theory"]
    if th["applies"]:
        lines.append(
            f"mean-field theory (sigma_w^2={th['sigma_w2']:.3g}, sigma_b^2={th['sigma_b2']:.3g}): "
            f"q*={_e(th['q_star'])}, chi_1={th['chi_1']:.4g}, predicted factor sqrt(chi_1)={th['factor']:.4g}, "
            f"depth scale {th['depth_scale']:.3g} layers; measured/predicted = {th['measured_over_predicted']:.3f}"
        )
    else:
        lines.append(th["why"])
    s = d["signs"]
    if s["weights_collapsing"] is not None or s["max_saturated_share"] is not None:  # else neither was measured
        lines.append(
            "signs: saturated layers: "
            + (", ".join(map(str, s["saturated_layers"])) or "none")
            + f" (max share {_e(s['max_saturated_share'])})"
            + "; weights collapsing: "
            + (f"[red]yes[/] (min |W| end/start {s['min_weight_norm_change']:.2f})" if s["weights_collapsing"]
               else f"no (min |W| end/start {_e(s['min_weight_norm_change'])})" if s["weights_collapsing"] is False
               else "n/a (|W| not finite at the end)")
        )
    return _panel(lines, d)


def print_run(console: Console, cfg, summary: dict, traces, run_dir, recurrent: bool = False) -> None:
    console.print(time_table(cfg, traces) if recurrent else layer_table(cfg, traces, summary.get("layers")))
    f, spread = summary["final"], summary.get("final_range")
    t = summary["timing"]

    def value(key, show):
        if not spread:
            return show(f[key])
        lo, hi = spread[key]
        return f"{show(f[key])} ({show(lo)} to {show(hi)})"

    seeds = f"median of {len(summary['seeds'])} seeds (min to max): " if spread else ""
    console.print(
        f"final, {seeds}train loss {value('train_loss', _e)}, train acc {value('train_acc', percent)}, "
        f"held-out loss {value('test_loss', _e)}, held-out acc {value('test_acc', percent)}   "
        f"[dim]({summary['steps_done']}/{summary['steps']} steps, status {summary['status']}; "
        + (f"compile {t['compile_s']:.2f} s, " if t.get("compile_s") is not None else "")
        + f"{t['steps_per_s']:.0f} steps/s"
        # a vectorized group's members compile and train as one program: the figures are the group's
        + (f"; one program for a group of {t['members']} jobs: compiled once, each advanced at this rate"
           if t.get("vectorized") else "") + ")[/]"
    )
    console.print(time_panel(summary) if recurrent else verdict_panel(summary))
    files = "summary.json, report.txt, traces.parquet, layers.parquet, steps.parquet, gradient_flow.png" if recurrent \
        else "summary.json, report.txt, traces.parquet, steps.parquet, gradient_flow.png" + (
            ", histograms.parquet, histograms.png" if cfg.histograms else "") + (
            ", leaves.parquet" if summary.get("leaves") else "")
    console.print(f"files: [bold]{run_dir}[/] ({files})", soft_wrap=True)  # piped: the path stays whole


def time_table(cfg, traces) -> Table:
    """Recurrent runs: |dL/dh_t| at a few horizons, top layer, step 0 and the end."""
    t_len, last = np.shape(traces.delta)[-1], len(traces.delta) - 1
    table = Table(title=f"Gradient through time (top layer), step 0 (start) and step {last * cfg.trace_every} (end)",
                  caption="|δ_t| = |dL/dh_t| (RMS over the batch); |J| = |v^T dh_T/dh_t| for a random unit v",
                  title_justify="left", caption_justify="left", box=box.SIMPLE_HEAD)
    for col in ("time step t", "horizon", "|δ_t| start", "|δ_t| end", "|J| start", "|J| end"):
        table.add_column(col, justify="left" if col == "time step t" else "right", no_wrap=True)
    for t in sorted({0, t_len // 4, t_len // 2, 3 * t_len // 4, t_len - 1}):
        table.add_row(str(t), str(t_len - 1 - t), _e(traces.delta[0, -1, t]), _e(traces.delta[last, -1, t]),
                      _e(traces.jacobian[0, -1, t]), _e(traces.jacobian[last, -1, t]))
    return table


def time_panel(summary: dict) -> Panel:
    d = summary["diagnosis"]
    g = d["gradient"]
    lines = [_headline(d), f"|δ_0| / |δ_T-1| (top layer) median over traced steps {_e(g['ratio_training'])}, "
             f"at step 0 {_e(g['ratio_init'])}, at the end {_e(g['ratio_final'])}; healthy within "
             f"[{d['thresholds']['vanish_ratio']:.0e}, {d['thresholds']['explode_ratio']:.0e}]"]
    lines.append(f"per-step factor |δ_t| / |δ_t+1| at step 0: {_e(d['per_step_factor_init'])}"
                 + (f" (an e-fold every {d['e_fold_steps_init']:.3g} steps)" if d["e_fold_steps_init"] else ""))
    lines.append(f"effective memory (|δ_t| > {d['memory_ratio']:.0e} |δ_T-1|): {d['effective_memory_init']} steps at "
                 f"the start, {d['effective_memory_final']} at the end")
    lines.append("W_rec: spectral radius " + ", ".join(_e(x) for x in d["rho_init"]) + " -> "
                 + ", ".join(_e(x) for x in d["rho_final"]) + "; largest singular value "
                 + ", ".join(_e(x) for x in d["sigma_max_init"]) + " -> " + ", ".join(_e(x) for x in d["sigma_max_final"]))
    return _panel(lines, d)


def job_line(summary: dict, run_dir) -> str:
    """A sweep's job in one line: its overrides (the folder's name), status, verdict with the gradient
    ratio at step 0, the held-out result, the wall time and the folder."""
    from pathlib import Path

    d, f = summary["diagnosis"], summary["final"]
    word = d["verdict"]
    ratio = d.get("ratio_first_last_init")
    held = percent(f["test_acc"], missing="") or f"loss {_e(f['test_loss'])}"
    return (f"{Path(run_dir).name}: {summary['status']}, [{COLORS[word]}]{word.upper()}[/] "
            f"(|δ| first/last {_e(ratio)} at step 0), held-out {held}, {summary['timing']['wall_s']:.1f} s  {run_dir}")


def write_report(run_dir, render) -> None:
    """report.txt in the run folder: what `render(console)` prints, as plain text at 100 columns."""
    import io
    from pathlib import Path

    from vgrun.io.store import atomic_write

    console = Console(file=io.StringIO(), record=True, width=100, color_system=None)
    render(console)
    atomic_write(Path(run_dir) / "report.txt", lambda p: p.write_text(console.export_text()))
