"""What the command line tells its user: `vgrun --help`, shell completion and "did you mean".

The help and the completion of values are vgrun's, checked in this process; Hydra's part
(installing completion, completing keys and groups, its own help) runs in one subprocess."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vgrun.cli import help
from vgrun.config import names, overrides
from vgrun.config.schema import Config, ConfigError, validate

CONF = Path(help.__file__).parents[1] / "conf"


def listed(text: str, key: str) -> set[str]:
    """The words of `key`'s row in the help, its wrapped lines included."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if re.match(rf"  {re.escape(key)} +\S", line))
    row = [lines[i]]
    for line in lines[i + 1:]:
        if not line.startswith(" " * 22):
            break
        row.append(line)
    return set(re.findall(r"[\w.]+", " ".join(row)))


def test_the_help_says_what_vgrun_is_then_its_examples_presets_values_and_companions():
    text = help.help_text()
    assert text.startswith("vgrun: a laboratory for the vanishing and exploding gradient problem")
    assert "powered by Hydra" not in text
    for example in ("vgrun model=mlp depth=20 act=sigmoid", "vgrun -m depth=5,10,20", "vgrun experiment=he2015",
                    "model.target=PKG.MODULE:FACTORY", "vgrun-compare", "vgrun-report", "-sc install=bash"):
        assert example in text, example
    presets = text.split("Presets")[1].split("\n\n")[0]
    assert set(re.findall(r"\w+", presets)) >= {p.stem for p in (CONF / "experiment").glob("*.yaml")}
    values = {"act": names.ACTS, "norm": names.NORMS, "dtype": names.DTYPES, "device": names.DEVICES,
              "optimizer.schedule": names.SCHEDULES, "data.inputs": names.INPUTS, "model.block": names.BLOCKS,
              "model.form": names.RNN_FORMS, "model.rec_init": names.REC_INITS, "init": names.INIT_NAMES,
              "model": names.MODELS, "optimizer": names.OPTIMIZERS + names.GRADIENT_FREE, "data": names.DATA,
              "pretrain": names.PRETRAIN, "hydra/launcher": ("basic", "cores", "vectorized")}
    for key, valid in values.items():
        assert listed(text, key) >= set(valid), key
    for group in ("model", "init", "optimizer", "data", "pretrain"):  # the files Hydra chooses among, too
        assert listed(text, group) >= {p.stem for p in (CONF / group).glob("*.yaml")}, group
    assert max(len(line) for line in text.splitlines()) <= 79


def test_a_plain_key_s_values_complete():
    assert help.complete("vgrun act=si") == ["act=sigmoid", "act=silu"]
    assert help.complete("vgrun depth=3 act=") == [f"act={a}" for a in names.ACTS]
    assert help.complete("vgrun -m act=relu,ta") == ["act=relu,tanh"]
    assert help.complete("vgrun optimizer.schedule=co") == ["optimizer.schedule=constant", "optimizer.schedule=cosine"]
    assert help.complete("vgrun lesion=t") == ["lesion=true"]
    assert help.complete("vgrun act=nosuch") == []
    for hydra_s in ("vgrun model=r", "vgrun hydra/launcher=c", "vgrun depth=", "vgrun ac", "vgrun act=si ", "vgrun"):
        assert help.complete(hydra_s) is None, hydra_s  # groups, keys, numbers, a new word: Hydra's


def test_near_misses_name_the_closest_choice():
    with pytest.raises(ConfigError, match=r"model.form='pascanu2' is not valid; did you mean 'pascanu'\? expected"):
        cfg = Config()
        cfg.model.form = "pascanu2"  # as a preset could set it: found by validate, after composing
        validate(cfg)
    with pytest.raises(ConfigError) as e:
        overrides.check(["act=xyz"])
    assert "did you mean" not in str(e.value)  # nothing close: no guess


DRIVER = """
import contextlib, io, json, os, sys
from hydra.core.global_hydra import GlobalHydra
from vgrun.cli import main as cli

results = []
for args, line in json.loads(sys.argv[1]):
    sys.argv = ["vgrun", *args]
    os.environ["COMP_LINE"] = line
    out = io.StringIO()
    GlobalHydra.instance().clear()
    code = None
    with contextlib.redirect_stdout(out):
        try:
            cli.main()
        except SystemExit as e:
            code = e.code
    results.append({"code": code, "out": out.getvalue()})
print(json.dumps(results))
"""

CASES = {  # name: (arguments, COMP_LINE)
    "install bash": (["-sc", "install=bash"], ""),
    "install zsh": (["--shell-completion", "install=zsh"], ""),
    "install fish": (["-sc", "install=fish"], ""),
    "act=si": (["-sc", "query=bash"], "vgrun act=si"),
    "model=r": (["-sc", "query=bash"], "vgrun model=r"),
    "model=r fish": (["-sc", "query=fish"], "vgrun model=r"),
    "after a preset": (["-sc", "query=bash"], "vgrun experiment=he2015 depth="),
    "hydra help": (["--hydra-help"], ""),
}


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    """Every command of CASES run by `vgrun.cli.main.main()` in one fresh process."""
    p = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(list(CASES.values()))], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path_factory.mktemp("help"), check=False)
    assert p.returncode == 0, p.stderr
    return dict(zip(CASES, json.loads(p.stdout.splitlines()[-1])))


def test_completion_installs_and_completes_groups_and_values(printed):
    assert all(printed[c]["code"] == 0 for c in CASES), printed
    for shell in ("bash", "zsh"):
        assert "complete -o nospace -o default -F hydra_bash_completion vgrun" in printed[f"install {shell}"]["out"]
    assert "complete -c vgrun -x -a '(hydra_fish_completion)'" in printed["install fish"]["out"]
    assert printed["act=si"]["out"].split() == ["act=sigmoid", "act=silu"]
    assert printed["model=r"]["out"].split() == ["model=resmlp", "model=rnn"]
    assert printed["model=r fish"]["out"].splitlines() == ["model=resmlp", "model=rnn"]
    assert printed["after a preset"]["out"].split() == ["depth=30"]  # experiment= without the +, as on a command line


def test_help_is_vgrun_s_and_hydra_s_stays(printed, monkeypatch, capsys):
    from vgrun.cli import main as cli

    for flag in ("--help", "-h"):
        monkeypatch.setattr(sys, "argv", ["vgrun", "depth=3", flag])
        with pytest.raises(SystemExit) as e:
            cli.main()
        assert e.value.code == 0 and capsys.readouterr().out == help.help_text() + "\n"
    assert printed["hydra help"]["out"].startswith("Hydra (") and "== Flags ==" in printed["hydra help"]["out"]


@pytest.mark.long
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("vgrun") is None, reason="needs bash and vgrun")
def test_an_installed_bash_completion_completes(tmp_path):
    """The script `vgrun -sc install=bash` prints, run by bash as at a TAB: it calls vgrun back."""
    script = """eval "$(vgrun -sc install=bash)"
for line in "vgrun act=si" "vgrun -m model=r"; do
    COMP_LINE=$line; COMP_POINT=${#line}; words=($line); COMP_CWORD=$((${#words[@]} - 1))
    hydra_bash_completion; echo "${COMPREPLY[*]}"
done"""
    path = os.pathsep.join([str(CONF.parents[1]), os.environ.get("PYTHONPATH", "")])  # this checkout's vgrun
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": path}, check=False)
    assert p.returncode == 0 and p.stdout.splitlines() == ["act=sigmoid act=silu", "model=resmlp model=rnn"], p
