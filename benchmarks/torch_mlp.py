"""The PyTorch (eager, CPU) baseline for vgrun's default job, with per-layer gradient norms every step.

    python benchmarks/torch_mlp.py --depth 20 --steps 2000 --threads 1 [--flush-denormal]

The same work as `vgrun model=mlp depth=D act=sigmoid` (data=digits, width 128, batch
128, 2000 steps, trace_every=1):
  - network 64 -> 128 (x depth hidden layers, sigmoid) -> 10, default nn.Linear init
    (U[+-1/sqrt(fan_in)] weights and biases; --init xavier: vgrun's default init);
  - batches of 128 drawn with replacement from the digits training split, which mirrors
    vgrun/data.py (scikit-learn's bundled digits.csv.gz, pixels / 16, a
    numpy default_rng(0) permutation whose first 25% is the held-out set);
  - plain SGD, lr 0.03, cross-entropy;
  - logged EVERY step and kept on the device (moved to the host once, at the end):
    loss, accuracy, |dL/dW_l| for every Linear and |dL/dz_l| for every pre-activation
    (retain_grad); the held-out set is evaluated every 100 steps (vgrun: once per chunk).
    Norms are plain torch norms (torch._foreach_norm), cheaper than vgrun's two-pass
    underflow-safe ones: the comparison leans in PyTorch's favour.

Measured: the training loop (all `steps` steps, from the first batch to the norms on
the host), excluding imports and data loading. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def digits(test_frac: float = 0.25):
    """vgrun/data.py's digits split: (x_train, y_train, x_test, y_test) as numpy arrays."""
    path = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0]) / "datasets/data/digits.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x, y = table[:, :-1] / 16.0, table[:, -1].astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))
    n_test = int(round(len(x) * test_frac))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


class MLP(nn.Module):
    def __init__(self, d_in: int, width: int, depth: int, d_out: int):
        super().__init__()
        dims = [d_in] + [width] * depth + [d_out]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x, keep_z: bool = False):
        """Returns the logits and the pre-activations z_l (hidden layers, then the output)."""
        zs = []
        h = x
        for i, lin in enumerate(self.linears):
            z = lin(h)
            if keep_z:
                z.retain_grad()
                zs.append(z)
            h = torch.sigmoid(z) if i < len(self.linears) - 1 else z
        return h, zs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    ap.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True)")
    ap.add_argument("--init", choices=["torch", "xavier"], default="torch",
                    help="PyTorch's default nn.Linear init, or vgrun's default (init=xavier: N(0, 2/(n_in+n_out)), zero bias)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ftz = torch.set_flush_denormal(True) if args.flush_denormal else False
    torch.manual_seed(args.seed)

    x_tr, y_tr, x_te, y_te = (torch.from_numpy(a) for a in digits())
    model = MLP(x_tr.shape[1], args.width, args.depth, 10)
    if args.init == "xavier":
        with torch.no_grad():
            for lin in model.linears:
                fan_out, fan_in = lin.weight.shape
                lin.weight.normal_(0.0, (2.0 / (fan_in + fan_out)) ** 0.5)
                lin.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    weights = [lin.weight for lin in model.linears]
    n_layers = len(weights)
    gen = torch.Generator().manual_seed(args.seed)

    # logs stay on the device until the end
    loss_log = torch.empty(args.steps)
    acc_log = torch.empty(args.steps)
    grad_w_log = torch.empty(args.steps, n_layers)
    delta_log = torch.empty(args.steps, n_layers)
    test_log = []
    sqrt_b = args.batch**0.5  # vgrun's delta: RMS over the batch of per-example |dL_i/dz_l| = sqrt(B) |dL/dz_l|

    t0 = time.perf_counter()
    for i in range(args.steps):
        if i % 100 == 0:
            with torch.no_grad():
                logits, _ = model(x_te)
                test_log.append(torch.stack([F.cross_entropy(logits, y_te), (logits.argmax(1) == y_te).float().mean()]))
        idx = torch.randint(0, x_tr.shape[0], (args.batch,), generator=gen)
        x, y = x_tr[idx], y_tr[idx]
        logits, zs = model(x, keep_z=True)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            loss_log[i] = loss
            acc_log[i] = (logits.argmax(1) == y).float().mean()
            grad_w_log[i] = torch.stack(torch._foreach_norm([w.grad for w in weights]))
            delta_log[i] = torch.stack(torch._foreach_norm([z.grad for z in zs])) * sqrt_b
        opt.step()
    logs = {k: v.numpy() for k, v in
            dict(loss=loss_log, acc=acc_log, grad_w=grad_w_log, delta=delta_log, test=torch.stack(test_log)).items()}
    train_s = time.perf_counter() - t0

    # what the arithmetic ran on at the end: share of gradient entries that are subnormal
    tiny = torch.finfo(torch.float32).tiny
    g = torch.cat([w.grad.flatten() for w in weights]).abs()
    subnormal = float(((g > 0) & (g < tiny)).float().mean())
    print(json.dumps({
        "depth": args.depth,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "flush_denormal": bool(ftz),
        "init": args.init,
        "train_s": train_s,
        "steps_per_s": args.steps / train_s,
        "final_loss": float(logs["loss"][-max(1, args.steps // 20):].mean()),
        "final_test_acc": float(logs["test"][-1, 1]),
        "delta_first_over_last": float(logs["delta"][0, 0] / logs["delta"][0, -2]),
        "subnormal_grad_frac": subnormal,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
