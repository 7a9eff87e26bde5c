"""The PyTorch (eager, CPU) baseline for vgrun's recurrent training, with per-time-step gradient norms.

    python benchmarks/torch_rnn.py --model rnn  --steps 300 --threads 1
    python benchmarks/torch_rnn.py --model lstm --steps 300 --threads 0 --impl fused

The same work as `vgrun model=rnn|lstm data=adding width=128 batch_size=64 seq_len=200
optimizer=adam optimizer.lr=0.001 trace_every=1`:
  - one recurrent layer, hidden 128: tanh RNN or LSTM (PyTorch's own nn.RNN / nn.LSTM
    parameters and initialisation), a Linear readout of the last step;
  - the adding problem generated on the fly with torch, as vgrun/tasks.py: inputs
    [B, T, 2], values ~ U[0, 1] and two markers, one uniform in [0, T//2), one in
    [T//2, T); the target is the sum of the two marked values; MSE loss;
  - Adam, lr 1e-3;
  - logged EVERY step and kept on the device (moved to the host once, at the end):
    the loss, |dL/dh_t| for every time step t (vgrun's `delta`: sqrt(B) * |dL/dh_t|_F,
    the RMS over the batch of the per-example norms), the norm of every parameter's
    gradient and the global gradient norm (torch._foreach_norm: one-pass norms, cheaper
    than vgrun's underflow-safe two-pass ones);
  - a fixed held-out batch of 1024 evaluated every `--eval-every` steps (vgrun: once
    per chunk, 15 steps at steps=300, trace_every=1);
  - with `--jacobian` (loop only), also vgrun's `jacobian` trace: |v_i^T dh_{T-1}/dh_t|
    for every t, RMS over the batch, for a random unit v_i per example, pulled back
    through the same forward pass (torch.autograd.grad on h_{T-1}, graph retained).
    With it, the time-step traces are vgrun's; vgrun's spectral radius and largest
    singular value of W_rec (on the host, beside the next chunk) are not done here.

`--impl`:
  loop   (default) the recurrence written out as a Python loop over t with the
         nn.RNN / nn.LSTM module's weights (the input projection of all steps is one
         matmul, as in vgrun); every h_t is kept with retain_grad(), so h_t.grad is the
         true dL/dh_t through time (BPTT). This is the comparison that does vgrun's work.
  fused  one call of nn.RNN / nn.LSTM and retain_grad() on its output sequence. Faster,
         but NOT the same measurement: the output sequence is only read by the readout at
         the last step, and the recurrence runs inside the op, so out.grad[:, t] is zero
         for every t < T-1 (see `delta_nonzero_steps` in the output). It is the PyTorch
         floor: its fastest RNN training step, with weight-gradient norms only.

Measured: the training loop (all `steps` steps after `--warmup` untimed ones, up to the
logs on the host), excluding imports. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def adding_batch(batch: int, seq_len: int, gen: torch.Generator):
    """vgrun/tasks.py `adding`: x [B, T, 2], y [B, 1]."""
    values = torch.rand(batch, seq_len, generator=gen)
    half = seq_len // 2
    first = torch.randint(0, half, (batch, 1), generator=gen)
    second = torch.randint(half, seq_len, (batch, 1), generator=gen)
    marks = torch.zeros(batch, seq_len).scatter_(1, first, 1.0).scatter_(1, second, 1.0)
    return torch.stack([values, marks], -1), (values * marks).sum(-1, keepdim=True)


def vgrun_init(net: "Net", hidden: int) -> None:
    """vgrun's initialisation (model=rnn / model=lstm, init=xavier): the same network as vgrun trains.

    W_rec: rnn N(0, 1/H) (rec_init=normal, rec_gain=1); lstm one orthogonal H x H block per
    gate (rec_init=orthogonal); input and readout weights xavier normal N(0, 2/(fan_in + fan_out));
    biases 0, plus forget_bias = 1 on the LSTM's forget gate (vgrun has one bias per gate,
    PyTorch two: bias_hh is set to 0)."""
    r, g = net.rnn, 4 if net.kind == "lstm" else 1
    with torch.no_grad():
        if g == 1:
            r.weight_hh_l0.normal_(0.0, hidden**-0.5)
        else:
            for k in range(g):
                nn.init.orthogonal_(r.weight_hh_l0[k * hidden:(k + 1) * hidden])
        for w in (r.weight_ih_l0, net.out.weight):
            fan_out, fan_in = w.shape
            w.normal_(0.0, (2.0 / (fan_in + fan_out)) ** 0.5)
        for b in (r.bias_ih_l0, r.bias_hh_l0, net.out.bias):
            b.zero_()
        if g == 4:  # PyTorch's gate order i, f, g, o
            r.bias_ih_l0[hidden:2 * hidden] = 1.0


class Net(nn.Module):
    def __init__(self, kind: str, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.kind = kind
        cls = nn.LSTM if kind == "lstm" else nn.RNN
        kw = {} if kind == "lstm" else {"nonlinearity": "tanh"}
        self.rnn = cls(n_in, hidden, num_layers=1, batch_first=True, **kw)
        self.out = nn.Linear(hidden, n_out)

    def forward_fused(self, x, keep: bool):
        seq, _ = self.rnn(x)  # [B, T, H]
        if keep:
            seq.retain_grad()  # only the readout's direct gradient: zero for t < T-1
        return self.out(seq[:, -1]), [seq]

    def forward_loop(self, x, keep: bool):
        r = self.rnn
        # input projection of all steps in one matmul, both biases folded in: [T, B, gH]
        a = F.linear(x.transpose(0, 1), r.weight_ih_l0, r.bias_ih_l0 + r.bias_hh_l0)
        w = r.weight_hh_l0.t()  # [H, gH]
        b, hdim = x.shape[0], w.shape[0]
        h = x.new_zeros(b, hdim)
        c = x.new_zeros(b, hdim)
        hs = []
        for a_t in a.unbind(0):  # not a[t]: each a[t]'s backward would add a zero-padded [T, B, gH] gradient
            z = torch.addmm(a_t, h, w)
            if self.kind == "lstm":  # PyTorch's gate order i, f, g, o
                i, f, g, o = z.chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                h = torch.tanh(z)
            if keep:
                h.retain_grad()  # h.grad = dL/dh_t through time
                hs.append(h)
        return self.out(h), hs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["rnn", "lstm"], default="rnn")
    ap.add_argument("--impl", choices=["loop", "fused"], default="loop")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=200)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (vgrun's compile is not timed either)")
    ap.add_argument("--eval-every", type=int, default=15, help="held-out evaluation period (0: never)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    ap.add_argument("--init", choices=["vgrun", "torch"], default="vgrun",
                    help="vgrun's initialisation (the same network) or PyTorch's default")
    ap.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True), as XLA on CPU")
    ap.add_argument("--no-norms", action="store_true", help="skip all gradient norms (plain training)")
    ap.add_argument("--jacobian", action="store_true",
                    help="also pull a random unit vector back from h_{T-1} to every h_t (vgrun's jacobian trace)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ftz = torch.set_flush_denormal(True) if args.flush_denormal else False
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = Net(args.model, 2, args.hidden, 1)
    if args.init == "vgrun":
        vgrun_init(model, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    params = list(model.parameters())
    forward = model.forward_loop if args.impl == "loop" else model.forward_fused
    keep = not args.no_norms
    if args.jacobian and (args.impl != "loop" or not keep):
        ap.error("--jacobian needs --impl=loop and the norms")
    x_te, y_te = adding_batch(1024, args.seq_len, torch.Generator().manual_seed(args.seed + 1))

    n = args.steps
    loss_log = torch.empty(n)
    grad_log = torch.empty(n, len(params) + 1)  # every parameter, then the global norm
    delta_log = torch.empty(n, args.seq_len)
    jac_log = torch.empty(n, args.seq_len)
    vgen = torch.Generator().manual_seed(args.seed + 2)  # v_i: the data stream stays the same
    test_log = []
    sqrt_b = args.batch**0.5

    def step(i: int, log: bool):
        if args.eval_every and i % args.eval_every == 0:
            with torch.no_grad():
                y, _ = forward(x_te, False)
                test_log.append(F.mse_loss(y, y_te))
        x, y_true = adding_batch(args.batch, args.seq_len, gen)
        y, hs = forward(x, keep)
        loss = F.mse_loss(y, y_true)
        opt.zero_grad(set_to_none=True)
        jac = args.jacobian and log
        loss.backward(retain_graph=jac)
        if log:
            with torch.no_grad():
                loss_log[i] = loss.detach()
                if keep:
                    g = torch.stack(torch._foreach_norm([p.grad for p in params]))
                    grad_log[i, :-1] = g
                    grad_log[i, -1] = g.norm()
                    if args.impl == "loop":
                        delta_log[i] = torch.stack(torch._foreach_norm([h.grad for h in hs])) * sqrt_b
                    else:
                        delta_log[i] = hs[0].grad.norm(dim=(0, 2)) * sqrt_b
        if jac:  # after dL/dh_t is logged: the retain_grad hooks add this pull's gradients to h_t.grad too
            v = torch.randn(hs[-1].shape, generator=vgen)
            v = v / v.norm(dim=1, keepdim=True)
            pulled = torch.autograd.grad(hs[-1], hs, grad_outputs=v)
            with torch.no_grad():
                jac_log[i] = torch.stack(torch._foreach_norm(pulled)) / sqrt_b
        opt.step()

    for i in range(args.warmup):
        step(i, False)
    t0 = time.perf_counter()
    for i in range(n):
        step(i, True)
    logs = {k: v.numpy() for k, v in dict(loss=loss_log, grad=grad_log, delta=delta_log).items()}
    test = torch.stack(test_log).numpy() if test_log else None
    train_s = time.perf_counter() - t0

    d0 = logs["delta"][0]
    j0 = jac_log[0].numpy()
    print(json.dumps({
        "model": args.model,
        "impl": args.impl,
        "init": args.init,
        "norms": keep,
        "jacobian": args.jacobian,
        "hidden": args.hidden, "batch": args.batch, "seq_len": args.seq_len,
        "steps": n,
        "eval_every": args.eval_every,
        "threads": torch.get_num_threads(),
        "flush_denormal": bool(ftz),
        "train_s": train_s,
        "steps_per_s": n / train_s,
        "ms_per_step": 1e3 * train_s / n,
        "final_loss": float(logs["loss"][-max(1, n // 20):].mean()),
        "final_test_loss": None if test is None else float(test[-1]),
        "delta_nonzero_steps": int((d0 > 0).sum()) if keep else None,
        "delta_first_over_last": float(d0[0] / d0[-1]) if keep and d0[-1] > 0 else None,
        "jacobian_first_over_last": float(j0[0] / j0[-1]) if args.jacobian else None,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
