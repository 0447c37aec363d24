"""The MD input on the shared input base (mlpot.config.base): ``mlpot md`` and ``mlpot train`` word the
same mistake the same way, and both resolve relative paths against the input file's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlpot.cli import main
from mlpot.errors import ConfigError

from md_engine.config import load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
WATER = ROOT / "data" / "water"
LJ = {"lj": {"epsilon": 0.0104, "sigma": 3.4, "cutoff": 8.0, "smooth": True}}


def training_input(**training) -> dict:
    return {"model": {"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "sel": [46, 92]}},
            "training": {"training_data": {"systems": [str(WATER / "data_0")]}, **training}}


def md_input(**keys) -> dict:
    return {"structure": "ar.xyz", "type_map": ["Ar"], "potential": LJ, "ensemble": "nve", "steps": 4, **keys}


def test_same_mistake_same_wording(tmp_path, capsys):
    train = tmp_path / "in.json"
    train.write_text(json.dumps(training_input(seeed=1)))
    md = tmp_path / "md.yaml"
    md.write_text(yaml.safe_dump(md_input(seeed=1)))
    with pytest.raises(ConfigError) as e_train:
        __import__("mlpot").load_config(train)
    with pytest.raises(ConfigError) as e_md:
        load_config(md)
    assert str(e_train.value) == f"{train}: training.seeed: unknown key (did you mean `seed`?)"
    assert str(e_md.value) == f"{md}: seeed: unknown key (did you mean `seed`?)"
    # the example, and a nested key of each input
    with pytest.raises(ConfigError) as e:
        parse_config(md_input(dtt=0.5), "md.yaml")
    assert str(e.value) == "md.yaml: dtt: unknown key (did you mean `dt`?)"
    with pytest.raises(ConfigError) as e:
        parse_config(md_input(potential={"lj": {"epsilon": 1, "sigma": 1, "cutof": 3}}), "md.yaml")
    assert str(e.value) == "md.yaml: potential.lj.cutof: unknown key (did you mean `cutoff`?)"
    with pytest.raises(ConfigError) as e:
        parse_config(md_input(dt=-1), "md.yaml")
    assert str(e.value) == "md.yaml: dt: expected a positive number, found -1"
    # the command lines print the same line
    assert main(["train", str(train)]) == 2 and main(["md", str(md)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-2] == f"mlpot train: error: {train}: training.seeed: unknown key (did you mean `seed`?)"
    assert err[-1] == f"mlpot md: error: {md}: seeed: unknown key (did you mean `seed`?)"


def test_relative_paths_against_the_input_folder(tmp_path, monkeypatch):
    from ase.build import bulk
    from ase.io import write

    (tmp_path / "structures").mkdir()
    (tmp_path / "inputs").mkdir()
    write(tmp_path / "structures" / "ar.xyz", bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3), format="extxyz")
    text = yaml.safe_dump(md_input(structure="../structures/ar.xyz", output_dir="out", restart="out/old.pt",
                                   init_temperature=30.0, thermo_every=2, traj_formats=["extxyz"],
                                   device="cpu", progress=False))
    path = tmp_path / "inputs" / "md.yaml"
    path.write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    seen = []
    for cwd in (tmp_path, elsewhere, tmp_path / "inputs"):
        monkeypatch.chdir(cwd)
        cfg = load_config(path.relative_to(tmp_path) if cwd == tmp_path else path)
        seen.append((cfg.structure, cfg.output_dir, cfg.restart, cfg.checkpoint_path()))
    assert seen[0] == seen[1] == seen[2]
    assert seen[0][:3] == (str(tmp_path / "structures" / "ar.xyz"), str(tmp_path / "inputs" / "out"),
                           str(tmp_path / "inputs" / "out" / "old.pt"))
    # the potential's model file too (it need not exist when the input is validated)
    cfg = parse_config(md_input(potential={"model": "../models/m.pt"}), str(path), base_dir=path.parent)
    assert cfg.potential.type == "model" and cfg.potential.file == str(tmp_path / "models" / "m.pt")
    assert parse_config(md_input(potential={"type": "model", "file": "/abs/m.pt"}), "x").potential.file == "/abs/m.pt"
    # a run from another folder writes next to the input, not into the current directory
    path.write_text(text.replace("restart: out/old.pt\n", ""))
    monkeypatch.chdir(elsewhere)
    assert main(["md", "../inputs/md.yaml"]) == 0
    assert (tmp_path / "inputs" / "out" / "thermo.csv").is_file() and not (elsewhere / "out").exists()
    # a dict given in Python (no file): relative to the current directory
    assert parse_config(md_input()).structure == "ar.xyz"
