"""Write the DeePMD-kit reference of tests/test_train_deepmd_steps.py (run in DeePMD-kit's venv).

    python make_reference.py /path/to/mlpot/data/water

Builds DeePMD-kit's PyTorch trainer from input.json (DATA replaced by the given directory), saves its
freshly initialised model (after the data statistics) as init.pt, trains numb_steps steps recording the
frames it draws (DeePMD-kit's SAMPLER_RECORD) and saves the final weights as final.pt; both files hold
the model state only (no optimizer state), read by mlpot with torch.load(weights_only=True).
"""
import json
import os
import pathlib
import shutil
import sys
import tempfile

import deepmd.env

# the PyPI wheel's compiled op library targets another torch; se_e2_a training does not use it
deepmd.env.SHARED_LIB_DIR = pathlib.Path("/nonexistent-deepmd-op-dir")
os.environ["SAMPLER_RECORD"] = "1"

import torch  # noqa: E402
from deepmd.pt.entrypoints.main import get_trainer  # noqa: E402
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
for src, dst in (("init.pt", "init.pt"), (f"model.ckpt-{steps}.pt", "final.pt")):
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    torch.save({"model": ckpt["model"]}, here / dst)
shutil.copyfile("Sample_rank_0.txt", here / "batches.txt")
shutil.copyfile("lcurve.out", here / "lcurve.out")
print("wrote", [p.name for p in here.iterdir()])
