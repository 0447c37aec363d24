"""``mlpot import-deepmd`` and ``mlpot export-deepmd``: DeePMD-kit se_e2_a / se_e2_r models ↔ mlpot model files.

    mlpot import-deepmd MODEL.dp|MODEL.yaml|model.ckpt.pt|frozen.pth|compressed.pth -o model.pt
    mlpot export-deepmd model.pt -o model.dp|model.yaml      (then: dp convert-backend model.dp model.pth)

Two commands in one file: ``import_deepmd_add_arguments``/``import_deepmd_run`` and
``export_deepmd_add_arguments``/``export_deepmd_run`` (``"mlpot.cli.deepmd:import_deepmd"`` in
:data:`mlpot.cli.COMMANDS`). Library: :mod:`mlpot.interop.deepmd`, :mod:`mlpot.export`.
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import add_device_option, add_output_option


def import_deepmd_add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot import-deepmd``."""
    parser.add_argument("model", help="DeePMD-kit model: .dp or .yaml (from 'dp convert-backend'), a PyTorch "
                                      "training checkpoint .pt, or a PyTorch frozen / compressed model .pth ('dp --pt "
                                      "freeze' / 'dp --pt compress'; read as data, its TorchScript code is never run)")
    add_output_option(parser, help="mlpot model file to write (e.g. model.pt)")
    add_device_option(parser)


def import_deepmd_run(args: argparse.Namespace) -> int:
    """Run ``mlpot import-deepmd``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    from mlpot.device import resolve_device
    from mlpot.export import save_model
    from mlpot.interop.deepmd import import_deepmd

    model = import_deepmd(args.model, device=resolve_device(args.device))
    save_model(model, args.output, metadata=model.metadata)
    cfg = model.get_config()["descriptor"]
    print(f"wrote mlpot model {args.output} from {args.model} ({cfg['type']}, type_map {model.type_map}, "
          f"rcut {cfg['rcut']} Å, sel {cfg['sel']}, {cfg['precision']})")
    comp = model.metadata.get("imported_from", {}).get("compressed")
    if comp:
        rec = model.descriptor.compression
        print(f"compressed as DeePMD-kit compressed it: {comp['n_tables']} tables re-tabulated from the weights (step "
              f"{rec['step']:g} / {rec['stride1']:g}, extrapolate {rec['extrapolate']:g}, min_nbor_dist "
              f"{rec['min_nbor_dist']:.4f} Å); max deviation from the file's tables {comp['max_rel_dev_tables']:.1e} "
              f"relative (type table {comp['max_rel_dev_type_table']:.1e})")
    return 0


def export_deepmd_add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot export-deepmd``."""
    parser.add_argument("model", help="mlpot model file (written by 'mlpot freeze' or 'mlpot import-deepmd')")
    add_output_option(parser, help="DeePMD-kit model to write: .dp (HDF5) or .yaml; then "
                                   "'dp convert-backend model.dp model.pth'")
    add_device_option(parser)


def export_deepmd_run(args: argparse.Namespace) -> int:
    """Run ``mlpot export-deepmd``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    from mlpot.export import load_model
    from mlpot.interop.deepmd import export_deepmd

    model = load_model(args.model, device=args.device)
    out = export_deepmd(model, args.output)
    print(f"wrote DeePMD-kit model {out} ({model.get_config()['descriptor']['type']}, type_map {model.type_map}); "
          f"convert with: dp convert-backend {out.name} {out.with_suffix('.pth').name}")
    return 0
