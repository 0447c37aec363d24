"""The command line as a whole (mlpot.cli): one listing, every command's --help, the shared flags spelled
and meant the same everywhere, user mistakes as one line + exit 2, Ctrl-C as 130, and the layering
(mlpot never imports md_engine, except the md command when it runs; ``import mlpot`` imports no torch)."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlpot import cli
from mlpot.cli import options

ROOT = Path(__file__).resolve().parent.parent
LONG_RUNNING = ("train", "md")


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


# ------------------------------------------------------------------------------------------- listing, --help
def test_help_lists_every_command_exactly_once() -> None:
    r = subprocess.run([sys.executable, "-m", "mlpot", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    words = [line.split()[0] for line in r.stdout.splitlines() if line.startswith("  ") and line.split()]
    for name in cli.COMMANDS:
        assert words.count(name) == 1, (name, r.stdout)
    assert set(_subparsers()) == set(cli.COMMANDS)


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mlpot {command}") and cli.COMMANDS[command][1].split()[0] in out


def test_version_and_unknown_command(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("mlpot ")
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlpot: error: unknown command 'trian' (did you mean `train`?)") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------- shared flags
def test_shared_flags_are_identical_across_commands() -> None:
    parsers = _subparsers()
    seen: dict[str, dict[str, argparse.Action]] = {}
    for name, p in parsers.items():
        for s, a in _options(p).items():
            seen.setdefault(s, {})[name] = a
    # --device: one default (None = auto), one help, in every command that has a device
    dev = seen["--device"]
    assert set(dev) >= {"neighbor-stat", "train", "test", "model-devi", "import-deepmd", "export-deepmd", "md"}
    for a in dev.values():
        assert (a.dest, a.default, a.help, a.metavar, a.option_strings) == \
            ("device", None, options.DEVICE_HELP, "DEVICE", ["--device"])
    # -t is never the type map; --type-map has no short form and one meaning
    assert all(a.dest != "type_map" for a in seen.get("-t", {}).values())
    for a in seen["--type-map"].values():
        assert (a.dest, a.option_strings, a.nargs, a.default) == ("type_map", ["--type-map"], "+", None)
    assert set(seen["--type-map"]) >= {"convert", "neighbor-stat"}
    # -s/--systems, -m, -o, -q: one destination each (-m: one model or several)
    for s, a in seen["-s"].items():
        assert (a.dest, a.option_strings[:2], a.nargs) == ("systems", ["-s", "--systems"], "+"), s
    assert {a.dest for a in seen["-m"].values()} == {"model", "models"}
    assert [a.option_strings for a in seen["-m"].values() if a.dest == "models"] == [["-m", "--models"]]
    assert {a.dest for a in seen["-o"].values()} == {"output"}
    assert all(a.option_strings[:2] == ["-o", "--output"] for a in seen["-o"].values())
    for cmd in LONG_RUNNING:
        q = _options(parsers[cmd])["-q"]
        assert (q.dest, q.option_strings, q.help) == ("quiet", ["-q", "--quiet", "--no-progress"], options.QUIET_HELP)
        assert _options(parsers[cmd])["--no-progress"] is q
    # any other flag that several commands share also means one thing (one destination)
    for s, by_cmd in seen.items():
        if s in ("-m", "--model", "--models", "-h", "--help"):
            continue
        assert len({a.dest for a in by_cmd.values()}) == 1, (s, {c: a.dest for c, a in by_cmd.items()})


def test_quiet_and_no_progress_are_synonyms() -> None:
    parsers = _subparsers()
    for cmd, argv in (("train", ["in.json"]), ("md", ["in.yaml"])):
        assert parsers[cmd].parse_args(argv + ["--no-progress"]).quiet
        assert parsers[cmd].parse_args(argv + ["-q"]).quiet
        assert not parsers[cmd].parse_args(argv).quiet


# ------------------------------------------------------------------------------------------- user mistakes
@pytest.mark.parametrize("argv", [
    ["freeze", "-c", "{tmp}/nope.pt"],
    ["test", "-m", "{tmp}/nope.pt", "-s", "{tmp}"],
    ["test", "-m", "{tmp}/nope.pt", "-s", "{tmp}", "-n", "-1"],
    ["model-devi", "-m", "{tmp}/a.pt", "-s", "{tmp}"],
    ["plot", "{tmp}/absent.out"],
    ["import-deepmd", "{tmp}/nope.dp", "-o", "{tmp}/x.pt"],
    ["export-deepmd", "{tmp}/nope.pt", "-o", "{tmp}/x.dp"],
    ["neighbor-stat", "-s", "{tmp}/nope", "-r", "6"],
    ["train", "{tmp}/nope.json"],
    ["md", "{tmp}/nope.yaml"],
    ["train", "{tmp}/in.json", "--bogus"],  # argparse's own usage error
    ["neighbor-stat", "-s", "x", "-r", "6", "-t", "O", "H"],  # -t is no type map
    ["neighbor-stat", "-s", "{root}/data/water/data_0", "-r", "6", "--device", "gpu"],
])
def test_user_mistake_is_one_line_and_exit_2(argv: list[str], tmp_path: Path, capsys) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{root}", str(ROOT)) for a in argv]
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors exit through parser.exit
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"mlpot {argv[0]}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err


def test_user_mistake_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "mlpot", "freeze", "-c", str(tmp_path / "nope.pt")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("mlpot freeze: error: ") and r.stderr.count("\n") == 1


def test_ctrl_c_exits_130(monkeypatch, capsys) -> None:
    import mlpot.cli.plot as plot_cmd

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(plot_cmd, "run", interrupted)
    assert cli.main(["plot", "lcurve.out"]) == 130
    assert capsys.readouterr().err == "mlpot plot: interrupted\n"


# ------------------------------------------------------------------------------------------- layering
def test_mlpot_never_imports_md_engine() -> None:
    """Every module under mlpot/ (except mlpot/cli/md.py, the md command) imported in one fresh process,
    plus the full parser: md_engine is not loaded (it imports mlpot, never the other way round)."""
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import mlpot, mlpot.cli\n"
        "names = [m.name for m in pkgutil.walk_packages(mlpot.__path__, 'mlpot.') if m.name != 'mlpot.cli.md'\n"
        "         and not m.name.startswith('mlpot.workflows')]\n"
        "for n in names: importlib.import_module(n)\n"
        "mlpot.cli.build_parser()\n"
        "print(json.dumps({'names': names, 'md_engine': sorted(m for m in sys.modules if m.split('.')[0] == 'md_engine')}))\n"
    )
    r = _run_python(code)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "mlpot.cli.convert" in out["names"] and "mlpot.metrics" in out["names"]
    assert out["md_engine"] == []


def test_only_the_cli_package_defines_commands() -> None:
    """No module of mlpot outside mlpot/cli, and none of md_engine, defines ``add_arguments`` (a command's
    parser lives in mlpot/cli); only mlpot/cli/md.py mentions md_engine in an import."""
    offenders, md_imports = [], []
    paths = sorted((ROOT / "mlpot").rglob("*.py")) + sorted((ROOT / "md_engine").rglob("*.py"))
    assert any(p.parent.name == "md_engine" for p in paths)
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "add_arguments":
                if not rel.startswith("mlpot/cli/"):
                    offenders.append(rel)
            if rel.startswith("md_engine/"):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and "argparse" in (
                        [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]):
                    offenders.append(rel)  # md_engine defines no command line
                continue
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "md_engine" for a in node.names):
                md_imports.append(rel)
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "md_engine":
                md_imports.append(rel)
    assert offenders == []
    # the top layer: mlpot/cli/md.py and the workflows (mlpot/workflows/, which run md_engine tasks)
    assert {p for p in md_imports if not p.startswith("mlpot/workflows/")} <= {"mlpot/cli/md.py"}
    for name in cli.COMMANDS.values():
        assert name[0].startswith("mlpot.cli.")


# ------------------------------------------------------------------------------------------- public API
def test_import_mlpot_imports_no_torch() -> None:
    """``import mlpot`` (and the CLI dispatcher) stays cheap: no torch, no ASE, no md_engine."""
    r = _run_python("import sys, mlpot, mlpot.cli; "
                    "print(sorted(m for m in ('torch', 'ase', 'md_engine') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_public_api() -> None:
    import mlpot
    import mlpot.metrics  # noqa: F401  (a submodule import must not shadow mlpot.evaluate)
    from mlpot.calculator import DeepPotCalculator, EnsembleCalculator
    from mlpot.config import load_config
    from mlpot.data.frames import LabeledFrames
    from mlpot.data.io import read, write
    from mlpot.export import freeze, load_model, save_model
    from mlpot.model import evaluate
    from mlpot.train.trainer import Trainer

    expected = dict(read=read, write=write, LabeledFrames=LabeledFrames, load_config=load_config, Trainer=Trainer,
                    evaluate=evaluate, save_model=save_model, load_model=load_model, freeze=freeze,
                    DeepPotCalculator=DeepPotCalculator, EnsembleCalculator=EnsembleCalculator)
    for name, obj in expected.items():
        assert getattr(mlpot, name) is obj, name
        assert name in mlpot.__all__ and name in dir(mlpot) and name in mlpot.__doc__
    for err in ("MlpotError", "DataError", "ConfigError", "ModelError", "SimulationError"):
        assert issubclass(getattr(mlpot, err), mlpot.MlpotError) and err in mlpot.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mlpot.nope  # noqa: B018
