"""Write a DeePMD-kit training-step reference for mlpot's replay tests (run in DeePMD-kit 3.2.0's venv)::

    python make_train_replay_reference.py deepmd_train_steps ../../data/water          # se_e2_a (.pt files)
    python make_train_replay_reference.py se_atten_train_steps ../../data/water --dp   # se_atten (.dp files)

Builds DeePMD-kit's PyTorch trainer from ``<reference dir>/input.json`` (``DATA`` replaced by the data
directory), saves its model right after initialisation and data statistics, trains ``numb_steps``
steps recording the frames it draws (DeePMD-kit's ``SAMPLER_RECORD``), and writes into the reference
directory:

* ``init.pt`` / ``final.pt``: the model state before and after training (tensors only, no optimizer
  state; read by mlpot through ``torch.load(weights_only=True)``);
* with ``--dp`` also ``init.dp`` / ``final.dp``: DeePMD-kit's own serializations of the same two
  checkpoints (``serialize_from_file``, as ``dp convert-backend``), the form mlpot's se_atten import reads;
* ``batches.txt`` (system and frames per step) and ``lcurve.out``.

The compiled op library of the PyPI wheel targets another torch; training does not use it, so it is hidden.
"""
import argparse
import json
import os
import pathlib
import shutil
import tempfile

import deepmd.env

deepmd.env.SHARED_LIB_DIR = pathlib.Path("/nonexistent-deepmd-op-dir")
os.environ["SAMPLER_RECORD"] = "1"

import torch  # noqa: E402
from deepmd.pt.entrypoints.main import get_trainer  # noqa: E402
from deepmd.utils.argcheck import normalize  # noqa: E402
from deepmd.utils.compat import update_deepmd_input  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("reference_dir", type=pathlib.Path)
ap.add_argument("data", type=pathlib.Path)
ap.add_argument("--dp", action="store_true", help="also write init.dp/final.dp (DeePMD-kit serializations)")
ap.add_argument("--out", type=pathlib.Path, default=None, help="write here instead of the reference directory")
a = ap.parse_args()
ref = a.reference_dir.resolve()
out = (a.out or ref).resolve()
out.mkdir(parents=True, exist_ok=True)
cfg = json.loads((ref / "input.json").read_text().replace("DATA", str(a.data.resolve())))
steps = cfg["training"]["numb_steps"]
os.chdir(tempfile.mkdtemp())
trainer = get_trainer(normalize(update_deepmd_input(cfg, warning=False)))
trainer.save_model("init.pt", lr=0.0, step=0)
trainer.run()
for src, name in (("init.pt", "init"), (f"model.ckpt-{steps}.pt", "final")):
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    torch.save({"model": ckpt["model"]}, out / f"{name}.pt")
    if a.dp:
        from deepmd.dpmodel.utils.serialization import save_dp_model
        from deepmd.pt.utils.serialization import serialize_from_file

        save_dp_model(str(out / f"{name}.dp"), serialize_from_file(src))
shutil.copyfile("Sample_rank_0.txt", out / "batches.txt")
shutil.copyfile("lcurve.out", out / "lcurve.out")
print("wrote", sorted(p.name for p in out.iterdir()))
