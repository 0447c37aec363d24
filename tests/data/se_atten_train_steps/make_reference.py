"""Write the DeePMD-kit reference of the se_atten training replay in tests/test_se_atten.py (run in
DeePMD-kit's venv, op library hidden)::

    python make_reference.py /path/to/mlpot/data/water

As ``tests/data/deepmd_train_steps/make_reference.py`` (DeePMD-kit's PyTorch trainer from input.json,
DATA replaced; the frames it draws recorded with SAMPLER_RECORD), with an se_atten descriptor (strip,
smooth, one attention layer). The initial model (after DeePMD-kit's data statistics) and the model
after numb_steps steps are written as DeePMD-kit serializations, init.dp and final.dp
(``deepmd.pt.utils.serialization.serialize_from_file`` of the checkpoints, as ``dp convert-backend``);
final.pt is the last training checkpoint itself (model state only).
"""
import json
import os
import pathlib
import shutil
import sys
import tempfile

import deepmd.env

deepmd.env.SHARED_LIB_DIR = pathlib.Path("/nonexistent-deepmd-op-dir")
os.environ["SAMPLER_RECORD"] = "1"

import torch  # noqa: E402
from deepmd.dpmodel.utils.serialization import save_dp_model  # noqa: E402
from deepmd.pt.entrypoints.main import get_trainer  # noqa: E402
from deepmd.pt.utils.serialization import serialize_from_file  # noqa: E402
from deepmd.utils.argcheck import normalize  # noqa: E402
from deepmd.utils.compat import update_deepmd_input  # noqa: E402

here = pathlib.Path(__file__).resolve().parent
data = pathlib.Path(sys.argv[1]).resolve()
cfg = json.loads((here / "input.json").read_text().replace("DATA", str(data)))
steps = cfg["training"]["numb_steps"]
work = pathlib.Path(tempfile.mkdtemp())
os.chdir(work)
trainer = get_trainer(normalize(update_deepmd_input(cfg, warning=False)))
trainer.save_model("init.pt", lr=0.0, step=0)
trainer.run()
for src, dst in (("init.pt", "init.dp"), (f"model.ckpt-{steps}.pt", "final.dp")):
    save_dp_model(str(here / dst), serialize_from_file(src))
# the final PyTorch training checkpoint itself, model state only (no optimizer state): mlpot imports it too
ckpt = torch.load(f"model.ckpt-{steps}.pt", map_location="cpu", weights_only=True)
torch.save({"model": ckpt["model"]}, here / "final.pt")
shutil.copyfile("Sample_rank_0.txt", here / "batches.txt")
shutil.copyfile("lcurve.out", here / "lcurve.out")
print("wrote", sorted(p.name for p in here.iterdir()))
