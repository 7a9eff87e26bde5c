#!/usr/bin/env bash
# The GPU path, checked in one short run: the default job and a 64-member vectorized sweep,
# on the GPU and then on the CPU of the same machine, with steps/s side by side.
#
#   bash benchmarks/gpu_check.sh download [--all]   # with a registry: fill benchmarks/wheels/
#   bash benchmarks/gpu_check.sh run                # on the GPU machine (jax with CUDA, no registry)
#   bash benchmarks/gpu_check.sh run --cpu-only     # the CPU half only (or GPU_CHECK_CPU_ONLY=1):
#                                                   # checks the commands and the parsing
#
# download: binary wheels for the target machine (manylinux x86_64, CPython GPU_CHECK_PY, default
#   3.12: the lent GPU machines' python3 is 3.12, with jax 0.11 for CUDA 13), pinned to the
#   versions installed here. By default only what such a machine's image lacks (hydra-core,
#   omegaconf and its antlr4 runtime, evosax and dotmap, the joblib and submitit launchers and
#   submitit, and setuptools to build vgrun): well under 2 MiB. --all adds the rest of vgrun's
#   dependencies with theirs (optax, rich, numpy, pandas, pyarrow, matplotlib, scikit-learn,
#   scipy, threadpoolctl, flax, ...) for a machine with nothing but jax: far more than the
#   64 MiB a carried working tree may hold. jax and jaxlib are never kept: the machine's own
#   CUDA build must stay.
# run: `pip install --no-index --find-links benchmarks/wheels -e .` (no registry: what the
#   machine has and satisfies vgrun's pins stays; anything else missing stops the script here),
#   then four runs, each timed as a whole process, one compilation cache per device:
#     default  vgrun model=mlp depth=20 act=sigmoid device=D        steps GPU_CHECK_STEPS (2000)
#     sweep    vgrun -m hydra/launcher=vectorized 'seed=range(0,64)' model=mlp depth=20
#              act=sigmoid device=D                                 steps GPU_CHECK_SWEEP_STEPS (200)
#   for D = gpu, then cpu (vgrun's default threads=1: one XLA thread). From each run's
#   summary.json: timing.steps_per_s and compile_s (for the sweep, the median over its 64 run
#   folders; member-steps/s = members x steps/s). A table at the end, with the card's name.
#   Budget: about 8 minutes on one GPU machine, install included. GPU_CHECK_OUT keeps the folders.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
WHEELS="${GPU_CHECK_WHEELS:-$HERE/wheels}"
PY="${PYTHON:-python3}"
STEPS="${GPU_CHECK_STEPS:-2000}"
SWEEP_STEPS="${GPU_CHECK_SWEEP_STEPS:-200}"
MEMBERS=64
JOB=(model=mlp depth=20 act=sigmoid)
# what the GPU image lacks, each without its dependencies (the image has PyYAML, joblib, cloudpickle,
# typing-extensions, flax, matplotlib, numpy); setuptools builds vgrun in pip's isolated build
LACKING=(hydra-core omegaconf evosax dotmap hydra-joblib-launcher hydra-submitit-launcher submitit setuptools)
# the rest of vgrun's runtime dependencies (pyproject.toml), for --all, with theirs
REST=(optax rich numpy pandas pyarrow matplotlib scikit-learn scipy threadpoolctl flax joblib PyYAML)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

die() { echo "gpu_check: $*" >&2; exit 1; }

pinned() {  # name==version as installed here (the name alone where it is not installed)
    "$PY" - "$@" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for name in sys.argv[1:]:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        print(name)
PYEOF
}

download() {
    local pyver="${GPU_CHECK_PY:-3.12}" reqs
    mkdir -p "$WHEELS"
    rm -f "$WHEELS"/*.whl "$WHEELS/PYTHON"
    echo "== source-only packages, built into wheels here (pure Python)"
    # omegaconf 2.3 needs antlr4-python3-runtime 4.9.*, published as a source archive only
    "$PY" -m pip wheel -q --no-deps -w "$WHEELS" "antlr4-python3-runtime==4.9.3"
    echo "== binary wheels for CPython $pyver, manylinux x86_64"
    mapfile -t reqs < <(pinned "${LACKING[@]}")
    "$PY" -m pip download -q -d "$WHEELS" --no-deps --only-binary=:all: --python-version "$pyver" \
        --implementation cp "${PLATFORMS[@]}" "${reqs[@]}"
    if [ "${1:-}" = "--all" ]; then
        mapfile -t reqs < <(pinned "${REST[@]}")
        "$PY" -m pip download -q -d "$WHEELS" --find-links "$WHEELS" --only-binary=:all: \
            --python-version "$pyver" --implementation cp "${PLATFORMS[@]}" "${reqs[@]}"
        rm -f "$WHEELS"/jax-[0-9]*.whl "$WHEELS"/jaxlib-*.whl  # the GPU machine keeps its own CUDA build
    fi
    echo "$pyver" > "$WHEELS/PYTHON"
    echo "== $(find "$WHEELS" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1) in $WHEELS (Python $pyver)"
}

install() {
    [ -f "$WHEELS/PYTHON" ] || die "no wheels in $WHEELS: run 'bash benchmarks/gpu_check.sh download' with a registry first"
    local want have
    want="$(cat "$WHEELS/PYTHON")"
    have="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    [ "$want" = "$have" ] || die "the wheels are for Python $want, $PY is $have: GPU_CHECK_PY=$have ... download"
    echo "== installing vgrun from $WHEELS (no registry)"
    PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install -q --no-index --find-links "$WHEELS" -e "$ROOT"
}

now() { "$PY" -c 'import time; print(time.time())'; }

record() {  # label, folder, wall seconds: steps/s and compile s from the folder's summary.json (or its runs')
    "$PY" - "$@" <<'PYEOF'
import json, statistics, sys
from pathlib import Path
label, folder, wall = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
files = [folder / "summary.json"] if (folder / "summary.json").is_file() else sorted(folder.glob("*/summary.json"))
timings = [json.loads(p.read_text())["timing"] for p in files]
if not timings:
    sys.exit(f"gpu_check: no summary.json in {folder}")
med = lambda k: statistics.median(t[k] for t in timings)
row = {"label": label, "wall_s": wall, "runs": len(timings), "steps_per_s": med("steps_per_s"),
       "compile_s": med("compile_s"), "members": int(statistics.median(t.get("members", 1) for t in timings))}
print(f"   {row['runs']} run folder(s), {row['members']} member(s) per program: {row['steps_per_s']:.1f} steps/s, "
      f"compile {row['compile_s']:.2f} s, wall {wall:.1f} s")
with open(folder.parent / "results.jsonl", "a") as f:
    print(json.dumps(row), file=f)
PYEOF
}

timed_run() {  # label, cache folder, vgrun arguments...: one whole process, timed and recorded
    local label="$1" cache="$2" t0 rc=0
    shift 2
    echo "== $label: vgrun $*"
    t0="$(now)"
    VGRUN_CACHE="$cache" "$PY" -m vgrun.cli.main "$@" > "$OUT/$label.log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -40 "$OUT/$label.log" >&2
        die "$label failed (exit $rc); its log: $OUT/$label.log"
    fi
    record "$label" "$OUT/$label" "$("$PY" -c "import time; print(time.time() - $t0)")"
}

run() {
    local cpu_only="${GPU_CHECK_CPU_ONLY:-0}"
    [ "${1:-}" = "--cpu-only" ] && cpu_only=1
    if [ "$cpu_only" = "1" ] && "$PY" -c "import vgrun, hydra, evosax" 2> /dev/null; then
        echo "== vgrun and its dependencies import: no install (--cpu-only)"
    else
        install
    fi
    OUT="${GPU_CHECK_OUT:-$(mktemp -d /tmp/gpu-check.XXXXXX)}"
    mkdir -p "$OUT"
    rm -rf "$OUT"/default-* "$OUT"/sweep-* "$OUT/results.jsonl"
    local card="none (--cpu-only)" devices=(cpu)
    if [ "$cpu_only" != "1" ]; then
        card="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" || die "nvidia-smi failed: no GPU here?"
        "$PY" -c "import jax; print('== jax', jax.__version__, jax.devices('gpu'))" || die "JAX sees no GPU"
        devices=(gpu cpu)
    fi
    echo "== card: $card; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
    echo "== default job: $STEPS steps; sweep: $MEMBERS members x $SWEEP_STEPS steps; folders in $OUT"
    cd "$ROOT"
    for d in "${devices[@]}"; do
        timed_run "default-$d" "$OUT/cache-$d" "${JOB[@]}" "device=$d" "steps=$STEPS" "hydra.run.dir=$OUT/default-$d"
        timed_run "sweep-$d" "$OUT/cache-$d" -m hydra/launcher=vectorized "seed=range(0,$MEMBERS)" \
            "${JOB[@]}" "device=$d" "steps=$SWEEP_STEPS" "hydra.sweep.dir=$OUT/sweep-$d"
    done
    "$PY" - "$OUT/results.jsonl" "$card" "$STEPS" "$SWEEP_STEPS" <<'PYEOF'
import json, sys
rows = {r["label"]: r for r in map(json.loads, open(sys.argv[1]))}
print(f"\nvgrun model=mlp depth=20 act=sigmoid on {sys.argv[2]}: default job {sys.argv[3]} steps, "
      f"sweep {sys.argv[4]} steps")
print(f"{'run':12s} {'folders':>7s} {'members':>7s} {'compile s':>9s} {'steps/s':>8s} {'member-steps/s':>14s} {'wall s':>7s}")
for label, r in rows.items():
    print(f"{label:12s} {r['runs']:7d} {r['members']:7d} {r['compile_s']:9.2f} {r['steps_per_s']:8.1f} "
          f"{r['members'] * r['steps_per_s']:14.0f} {r['wall_s']:7.1f}")
for kind in ("default", "sweep"):
    g, c = rows.get(f"{kind}-gpu"), rows.get(f"{kind}-cpu")
    if g and c:
        print(f"{kind:8s} GPU / CPU: steps/s {g['steps_per_s'] / c['steps_per_s']:.2f}x, "
              f"wall time {c['wall_s'] / g['wall_s']:.2f}x shorter on the GPU")
PYEOF
}

case "${1:-}" in
    download) shift; download "$@" ;;
    run) shift; run "$@" ;;
    *) die "usage: bash benchmarks/gpu_check.sh download [--all] | run [--cpu-only]" ;;
esac
