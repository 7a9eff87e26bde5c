"""What does tracing cost on a network of one's own, against vgrun's own MLP?

Each network trains the same steps twice: every step traced (trace_every=1, vgrun's default:
the taps' probes, activation statistics and the per-leaf norms at every step) and only step 0
traced (trace_every=steps). The ratio of their training times (`Result.train_s`, compilation
excluded) is what the traces cost. Networks:

  mlp     vgrun's own: `model=mlp depth=20 act=sigmoid` (digits, width 128, batch 128)
  res20   `model=custom model.target=vgrun.zoo.cnn:res20 data.images=true` (He et al. 2016's
          20-layer ResNet, Flax NNX, 10 taps: the stem and every block's output, then the output)

The two settings alternate, round after round, in one process; medians are reported.

    python benchmarks/bench_custom.py [--rounds 3] [--steps 100]
"""

from __future__ import annotations

import argparse
import json
import statistics

NETWORKS = {
    "mlp": ["model=mlp", "depth=20", "act=sigmoid"],
    "res20": ["model=custom", "model.target=vgrun.zoo.cnn:res20", "data.images=true", "optimizer=momentum",
              "optimizer.lr=0.1"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100, help="steps of the CNN (the MLP runs 20x as many)")
    args = ap.parse_args()

    import vgrun
    from vgrun.training import loop
    from vgrun.training.cache import ProgramCache

    cache = ProgramCache(keep=8)  # compiled once per setting: the rounds time the training alone
    out: dict = {}
    for name, overrides in NETWORKS.items():
        steps = args.steps * (20 if name == "mlp" else 1)
        cfgs = {every: vgrun.compose([*overrides, f"steps={steps}", f"trace_every={every}", "chunks=1"])
                for every in (1, steps)}
        times = {every: [] for every in cfgs}
        for _ in range(args.rounds + 1):  # the first round compiles
            for every, cfg in cfgs.items():
                if name != "mlp":
                    from vgrun.training.program import resolve

                    cfg = resolve(cfg)[0]
                times[every].append(loop.run(cfg, cache=cache).train_s / steps)
        med = {every: statistics.median(t[1:]) for every, t in times.items()}
        out[name] = {"ms_per_step_traced": 1e3 * med[1], "ms_per_step_untraced": 1e3 * med[steps],
                     "ratio": med[1] / med[steps]}
    print(json.dumps(out, indent=1))
    print("\nnetwork   every step traced   step 0 traced   ratio")
    for name, r in out.items():
        print(f"{name:8s}  {r['ms_per_step_traced']:12.2f} ms   {r['ms_per_step_untraced']:10.2f} ms   "
              f"{r['ratio']:.3f}x")


if __name__ == "__main__":
    main()
