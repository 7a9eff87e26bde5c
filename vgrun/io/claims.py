"""claims.json, and the run folders a preset's claims are judged on."""

from __future__ import annotations

import json
from pathlib import Path

from vgrun.io.store import _json_clean, atomic_write, find_runs, load_summary
from vgrun.science.claim_metrics import Run


def load(paths) -> list[Run]:
    """Every run folder under `paths`, with its summary."""
    return [Run(p, load_summary(p)) for p in find_runs(paths)]


def write(folder, report: dict) -> Path:
    """<folder>/claims.json, atomically."""
    path = Path(folder) / "claims.json"
    text = json.dumps(_json_clean(report), indent=2)
    atomic_write(path, lambda p: p.write_text(text + "\n"))
    return path
