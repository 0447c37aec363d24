"""Model compression of a model file (``mlpot compress``): tabulated embedding nets.

:func:`compress_file` reads an uncompressed model file, tabulates its embedding nets
(:meth:`mlpot.model.EnergyModel.compress`, tables: :mod:`mlpot.descriptors.tabulate`), checks the
tables against the nets (and, given data, the compressed model against the uncompressed one) and
writes the compressed model file: the same checksummed, weights-only format (:mod:`mlpot.export`)
with the tables as tensors ``descriptor.compress_data_<net>`` / ``descriptor.compress_info_<net>`` and
the record ``metadata.compression`` (step, stride1, extrapolate, check_frequency, min_nbor_dist (Å),
per net [lower, upper, max, nspline]). The original embedding weights stay in the file.
:func:`mlpot.export.load_model` (and so the ASE calculator, ``mlpot test``, ``mlpot md``) uses the
tables with no further option.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from mlpot.errors import ModelError


@dataclass
class CompressReport:
    """What :func:`compress_file` did: output path, record, table bytes and the deviations found
    (max |ΔG|, max |dΔG/ds̃| on sampled table points; max |ΔE|/atom (eV) and |ΔF| (eV/Å) on check frames)."""

    output: Path
    record: dict[str, Any]
    table_bytes: int
    n_points: int
    max_dg: float
    max_ddg: float
    n_check_frames: int = 0
    max_de_per_atom: float = float("nan")
    max_df: float = float("nan")
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        rec = self.record
        tabs = rec["tables"]
        n_int = sum(int(v[3]) for v in tabs.values())
        lines = [
            f"compressed -> {self.output}: {len(tabs)} embedding tables, {n_int:,} intervals, "
            f"{self.table_bytes / 2**20:.2f} MiB (step {rec['step']:g} / {rec['stride1']:g}, extrapolate "
            f"{rec['extrapolate']:g}, min_nbor_dist {rec['min_nbor_dist']:.4f} Å, check_frequency {rec['check_frequency']})",
            f"max deviation table vs net over {self.n_points:,} points: |dG| {self.max_dg:.2e}, |dG/ds| {self.max_ddg:.2e}",
        ]
        if self.n_check_frames:
            lines.append(
                f"max deviation compressed vs uncompressed on {self.n_check_frames} check frames: "
                f"|dE|/atom {self.max_de_per_atom:.2e} eV, |dF| {self.max_df:.2e} eV/Å"
            )
        lines.extend(self.notes)
        return "\n".join(lines)


def table_deviation(model: Any, uncompressed: Any, n_per_table: int = 2000, seed: int = 0) -> tuple[int, float, float]:
    """Max |G_table − G_net| and |dG_table − dG_net| (float64) over random points of every table's
    range [lower, max) plus 200 points beyond each end: (n_points, max_dg, max_ddg)."""
    from mlpot.descriptors import tabulate as tab

    desc, ref = model.descriptor, uncompressed.descriptor
    ft = tab.flat_tables(
        [getattr(desc, f"compress_data_{k}") for k in desc.table_keys()],
        [getattr(desc, f"compress_info_{k}") for k in desc.table_keys()], torch.float64, torch.device("cpu"),
    )
    g = torch.Generator().manual_seed(seed)
    n_pts, max_dg, max_ddg = 0, 0.0, 0.0
    for tid, key in enumerate(desc.table_keys()):
        lo, _, mx, _ = (float(v) for v in desc.compression["tables"][key])
        x = lo + (mx - lo) * torch.rand(n_per_table, generator=g, dtype=torch.float64)
        ids = torch.full_like(x, tid, dtype=torch.long)
        net = tab.float64_copy(ref.table_net(key))
        xg = x.clone().requires_grad_(True)
        y = net(xg[:, None])
        dy = torch.stack([torch.autograd.grad(y[:, c].sum(), xg, retain_graph=True)[0] for c in range(y.shape[1])], 1)
        gt = tab.eval_table(x, ids, ft)
        dgt = tab.eval_table(x, ids, ft, derivative=True)
        max_dg = max(max_dg, float((gt - y.detach()).abs().max()))
        max_ddg = max(max_ddg, float((dgt - dy).abs().max()))
        n_pts += n_per_table
    return n_pts, max_dg, max_ddg


def frame_deviation(model: Any, uncompressed: Any, systems: Sequence[Any], max_frames: int = 2) -> tuple[int, float, float]:
    """Max |ΔE|/atom (eV) and |ΔF| (eV/Å) between the two models on the first frames of each system."""
    from mlpot.model import evaluate

    n, de, df = 0, 0.0, 0.0
    for s in systems:
        s = s if list(s.type_map) == list(model.type_map) else s.with_type_map(model.type_map)
        for f in range(min(max_frames, s.n_frames)):
            args = (s.positions[f], s.atom_types, s.cells[f], s.pbc)
            a = evaluate(model, *args, outputs=("energy", "forces"))
            b = evaluate(uncompressed, *args, outputs=("energy", "forces"))
            de = max(de, float((a["energy"] - b["energy"]).detach().abs().max()) / s.n_atoms)
            df = max(df, float((a["forces"] - b["forces"]).detach().abs().max()))
            n += 1
    return n, de, df


def compress_file(
    path: str | os.PathLike, output: str | os.PathLike, step: float = 0.01, extrapolate: float = 5.0,
    check_frequency: int = -1, min_distance: Optional[float] = None, systems: Optional[Sequence[str]] = None,
) -> CompressReport:
    """Compress the model file ``path`` into ``output`` (see the module docstring).

    ``min_distance`` (Å) overrides the recorded minimum neighbor distance; ``systems`` (data paths):
    the training data, whose shortest pair distance is used when the model records none, and whose
    first frames are the check set. Raises ModelError / ConfigError (nothing written) for an already
    compressed model, a descriptor that cannot be compressed, a bad step / extrapolate / distance, or
    a model without a recorded distance when neither ``min_distance`` nor ``systems`` is given."""
    from mlpot.descriptors import tabulate as tab
    from mlpot.export import load_model, save_model

    src = Path(path)
    where = f"model file '{src}'"
    model = load_model(src, device="cpu")
    model.check_compressible(where)
    tab.check_parameters(step, extrapolate, min_distance, float(model.rcut))
    if isinstance(check_frequency, bool) or int(check_frequency) != check_frequency or (check_frequency < 1 and check_frequency != -1):
        from mlpot.errors import ConfigError

        raise ConfigError(f"compress --check-frequency: expected a positive number of evaluations or -1 (off), found {check_frequency}")
    r_min = min_distance if min_distance is not None else model.min_nbor_dist
    data = None
    if systems:
        from mlpot.data.io import open_datasets

        data = open_datasets(list(systems), type_map=model.type_map)
    notes = []
    if r_min is None:
        if data is None:
            raise ModelError(
                f"{where}: records no minimum neighbor distance (a model trained before mlpot recorded it): give "
                "--min-distance R (Å; 'mlpot neighbor-stat -s DATA -r RCUT' prints it as 'min nbor dist') or the "
                "training data with -s SYSTEM..."
            )
        from mlpot.data.neighbor_stat import neighbor_stat

        stat = neighbor_stat(data, float(model.rcut), device="cpu")
        if not math.isfinite(stat.min_dist):
            raise ModelError(f"-s {' '.join(map(str, systems))}: no pair within rcut = {model.rcut:g} Å; cannot set the table range")
        r_min = float(stat.min_dist)
        notes.append(f"min_nbor_dist {r_min:.4f} Å from {stat.n_frames} frames of the given systems")
    tab.check_parameters(step, extrapolate, float(r_min), float(model.rcut))
    uncompressed = copy.deepcopy(model)
    record = model.compress(float(r_min), float(step), float(extrapolate), int(check_frequency))
    n_pts, max_dg, max_ddg = table_deviation(model, uncompressed)
    n_fr, de, df = (0, float("nan"), float("nan"))
    if data is not None:
        n_fr, de, df = frame_deviation(model, uncompressed, [d.read(slice(0, min(2, d.n_frames))) for d in data])
    meta = {k: v for k, v in dict(getattr(model, "metadata", {}) or {}).items() if k not in ("created", "compression")}
    meta["compressed_from"] = str(src)
    out = save_model(model, output, metadata=meta)
    nbytes = sum(
        getattr(model.descriptor, f"compress_data_{k}").numel() * getattr(model.descriptor, f"compress_data_{k}").element_size()
        for k in model.descriptor.table_keys()
    )
    return CompressReport(out, record, nbytes, n_pts, max_dg, max_ddg, n_fr, de, df, notes)


__all__ = ["CompressReport", "compress_file", "table_deviation", "frame_deviation"]
