"""The README's notebook example, run as written, and the public API's names."""

from __future__ import annotations

import re
from pathlib import Path

import vgrun

README = Path(__file__).resolve().parents[1] / "README.md"


def notebook_block() -> str:
    text = README.read_text()
    section = text[text.index("## In a notebook"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_notebook_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(notebook_block(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.split()[0] == "vanishing"  # 8 sigmoid layers: the textbook case
    folder = tmp_path / "outputs" / "notebook" / "sigmoid8"
    for name in ("summary.json", "traces.parquet", "steps.parquet", "gradient_flow.png"):
        assert (folder / name).is_file(), name
    table = vgrun.load_table(folder)
    assert table.loc[0, "verdict"] == "vanishing" and table.loc[0, "depth"] == 8


def test_the_public_names_resolve():
    for name in vgrun.__all__:
        assert callable(getattr(vgrun, name)), name
