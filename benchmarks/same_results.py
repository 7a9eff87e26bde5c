"""Do two trees compute the same thing? Run a fixed list of jobs with each tree's Python and
compare every table and summary, value for value.

    python benchmarks/same_results.py run  --python /path/to/venv/bin/python --out /tmp/a
    python benchmarks/same_results.py run  --python python --out /tmp/b
    python benchmarks/same_results.py diff /tmp/a /tmp/b
    python benchmarks/same_results.py programs --python /path/to/venv/bin/python   # and again with the other

`programs` prints a hash of each job's lowered chunk program (StableHLO, source locations
dropped): equal hashes mean the two trees hand XLA the same program, so their training
speed can differ only by noise.

`run` starts each job through the `vgrun` console script's entry point, from the given
interpreter, so the tree installed there is the one measured. `diff` compares the
Parquet tables exactly (NaN equal to NaN) and summary.json without what changes by itself
from run to run (timings, paths, dates).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RUNS = {
    "default": [],
    "sigmoid20": ["model=mlp", "depth=20", "act=sigmoid"],
    "resmlp": ["model=resmlp", "depth=20", "act=relu", "init=he", "steps=400"],
    "rnn": ["model=rnn", "data=adding", "seq_len=50", "steps=200"],
    "lstm": ["model=lstm", "data=adding", "seq_len=30", "steps=100"],
    "doya": ["model=doya"],
    "seeds": ["depth=5", "steps=200", "seeds=3"],
    "rbm": ["pretrain=rbm", "act=sigmoid", "depth=4", "steps=200", "pretrain.steps=100"],
    "ga": ["optimizer=ga", "depth=3", "width=16", "steps=40", "optimizer.popsize=16"],
    "vectorized": ["-m", "hydra/launcher=vectorized", "depth=5", "steps=200", "optimizer.lr=0.01,0.1", "seed=0,1"],
}
ENTRY = ("import sys; from importlib.metadata import entry_points; "
         "sys.exit(entry_points(group='console_scripts', name='vgrun')[0].load()())")
# summary.json keys that differ between any two runs of the same job
VOLATILE = {"timing", "wall_s", "compile_s", "train_s", "steps_per_s", "log", "run_dir", "seconds", "pid", "host",
            "started", "ended", "path"}


PROGRAMS = r"""
import hashlib, re
import jax
try:  # this tree's layout, or the flat one before it
    from vgrun.config import hyper
    from vgrun.config.schema import Config, DataConfig, ModelConfig, OptimizerConfig
    from vgrun.training.program import make_train
except ImportError:
    from vgrun import hyper
    from vgrun.config import Config, DataConfig, ModelConfig, OptimizerConfig
    from vgrun.train import make_train
jobs = {
    "mlp depth 20 sigmoid": Config(depth=20, act="sigmoid"),
    "resmlp depth 20 relu": Config(model=ModelConfig(name="resmlp"), depth=20, act="relu"),
    "rnn adding T=50": Config(model=ModelConfig(name="rnn"), depth=1, data=DataConfig(name="adding"), seq_len=50),
    "lstm adding T=100 adam": Config(model=ModelConfig(name="lstm"), depth=1, data=DataConfig(name="adding"),
                                     seq_len=100, steps=300, optimizer=OptimizerConfig(name="adam", lr=0.001)),
}
for name, cfg in jobs.items():
    prog = make_train(cfg)
    carry = jax.eval_shape(prog.init_jit, jax.random.PRNGKey(0), hyper.values(cfg))
    text = re.sub(r"loc\(.*?\)|#loc\d* = .*", "", prog.chunk.lower(carry, prog.problem.arrays).as_text())
    print(f"{name:<24} {hashlib.sha1(text.encode()).hexdigest()[:16]}")
"""


def run(python: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, args in RUNS.items():
        folder = out / name
        where = [f"hydra.sweep.dir={folder}"] if "-m" in args else [f"hydra.run.dir={folder}"]
        cmd = [python, "-c", ENTRY, *args, *where]
        done = subprocess.run(cmd, capture_output=True, text=True)
        print(f"{name}: exit {done.returncode}", flush=True)
        if done.returncode:
            print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def diff(a: Path, b: Path) -> int:
    import pandas as pd

    bad = 0
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.suffix in (".parquet", ".json"))
    for rel in files:
        other = b / rel
        if not other.exists():
            print(f"missing in {b}: {rel}")
            bad += 1
            continue
        if rel.suffix == ".parquet":
            x, y = pd.read_parquet(a / rel), pd.read_parquet(other)
            same = list(x.columns) == list(y.columns) and x.shape == y.shape and x.equals(y)
        else:
            same = _clean(json.loads((a / rel).read_text())) == _clean(json.loads(other.read_text()))
        print(f"{'same' if same else 'DIFFERENT'}: {rel}")
        bad += not same
    print(f"{len(files) - bad} of {len(files)} files the same")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--python", default=sys.executable)
    r.add_argument("--out", type=Path, required=True)
    h = sub.add_parser("programs")
    h.add_argument("--python", default=sys.executable)
    d = sub.add_parser("diff")
    d.add_argument("a", type=Path)
    d.add_argument("b", type=Path)
    args = p.parse_args()
    if args.cmd == "run":
        run(args.python, args.out)
        return 0
    if args.cmd == "programs":
        return subprocess.run([args.python, "-c", PROGRAMS]).returncode
    return diff(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
