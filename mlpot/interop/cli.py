"""``mlpot import-deepmd`` and ``mlpot export-deepmd``: DeePMD-kit se_e2_a / se_e2_r models ↔ mlpot model files.

    mlpot import-deepmd MODEL.dp|MODEL.yaml|model.ckpt.pt -o model.pt
    mlpot export-deepmd model.pt -o model.dp|model.yaml      (then: dp convert-backend model.dp model.pth)

Both subcommands live in this module (one entry in ``mlpot.cli.COMMANDS`` each); ``run`` dispatches
on ``args.command``. See :mod:`mlpot.interop.deepmd` for the formats and the mapping.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    exporting = parser.prog.split()[-1] == "export-deepmd"
    if exporting:
        parser.add_argument("model", help="mlpot model file (written by 'mlpot freeze' or 'mlpot import-deepmd')")
        parser.add_argument("-o", "--output", required=True,
                            help="DeePMD-kit model to write: .dp (HDF5) or .yaml; then 'dp convert-backend model.dp model.pth'")
    else:
        parser.add_argument("model", help="DeePMD-kit model: .dp or .yaml (from 'dp convert-backend'), or a PyTorch "
                                          "training checkpoint .pt; a frozen .pth must be converted to .dp first")
        parser.add_argument("-o", "--output", required=True, help="mlpot model file to write (e.g. model.pt)")
    parser.add_argument("--device", default="cpu", help="device used while converting (default: cpu)")


def run(args: argparse.Namespace) -> int:
    from mlpot.interop import deepmd

    if args.command == "export-deepmd":
        from mlpot.export import load_model

        model = load_model(args.model, device=args.device)
        out = deepmd.export_deepmd(model, args.output)
        print(f"wrote DeePMD-kit model {out} ({model.get_config()['descriptor']['type']}, type_map {model.type_map}); "
              f"convert with: dp convert-backend {out.name} {out.with_suffix('.pth').name}")
        return 0
    from mlpot.export import save_model

    model = deepmd.import_deepmd(args.model, device=args.device)
    save_model(model, args.output, metadata=model.metadata)
    cfg = model.get_config()["descriptor"]
    print(f"wrote mlpot model {args.output} from {args.model} ({cfg['type']}, type_map {model.type_map}, "
          f"rcut {cfg['rcut']} Å, sel {cfg['sel']}, {cfg['precision']})")
    return 0
