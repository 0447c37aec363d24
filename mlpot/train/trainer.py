"""The training loop: Adam, DeePMD-kit's lr/prefactor schedules, lcurve.out, checkpoints, DDP.

One step ``t`` (0-based):

0. (once, before the model is built) ``model.descriptor.sel: "auto[:R]"`` becomes numbers from the
   neighbor statistics of the training data; the resolved list is logged and stored in the model
   config that checkpoints and the frozen model record;
1. ``lr = lr(t)`` (:class:`~mlpot.train.schedule.ExpDecayLR`: stepped or smooth exponential decay,
   optional linear warm-up), set on every Adam parameter group;
2. the batch of ``(seed, t, rank)`` (:class:`~mlpot.train.data.BatchSource`), energies/forces/virials
   from :func:`mlpot.model.evaluate` with ``create_graph=True`` so the force loss is differentiable;
3. the DeePMD loss (:class:`~mlpot.train.loss.EnergyLoss`), backward, optional gradient clipping,
   ``optimizer.step()``.

After step ``t`` the trainer reports (rank 0 only) when ``t + 1 == 1`` or ``(t + 1) % disp_freq == 0``,
as DeePMD-kit does: the training metrics of this step's batch (computed before the update) and the
natoms-weighted mean over ``numb_btch`` validation batches (after the update), one ``lcurve.out``
line labelled ``t + 1``. Checkpoints are written when ``(t + 1) % save_freq == 0`` and at the end:
``{save_ckpt}-{t+1}.pt`` (the newest ``max_ckpt_keep`` kept) and a copy ``{save_ckpt}.pt`` (latest).

Data parallel (``torchrun --nproc_per_node=N -m mlpot train input.json``): every rank builds the same
model (same seed), draws its own batch (rank-specific RNG stream) and the gradients are averaged by
:class:`torch.nn.parallel.DistributedDataParallel`. With ``emulate_world_size=W`` a single process
computes the mean of the ``W`` per-rank losses instead, whose gradient is exactly the average of the
per-rank gradients: the reference the DDP test compares against.

Checkpoints: :mod:`mlpot.train.checkpoint`; the learning curve: :mod:`mlpot.train.lcurve`. Data are
:class:`~mlpot.data.dataset.Dataset` s: an HDF5 store is read lazily (only each batch's frames, the
statistics' subsample and the energies for the bias), other formats are loaded into memory.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from mlpot.config import Config, load_config
from mlpot.device import resolve_device
from mlpot.errors import ConfigError, ModelError
from mlpot.train import checkpoint as ckpt_io
from mlpot.train import lcurve
from mlpot.train.checkpoint import Checkpoint
from mlpot.train.data import TRAIN_STREAM, VALID_STREAM, Batch, BatchSource
from mlpot.train.loss import EnergyLoss
from mlpot.train.schedule import ExpDecayLR, lr_schedule_from_config

class _Evaluator(torch.nn.Module):
    """``forward(batch) -> evaluate(model, ...)``: the module DDP wraps, so that its forward (and the
    gradient all-reduce it arms) runs once per step around :func:`mlpot.model.evaluate`."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, forces: bool, virial: bool, create_graph: bool) -> dict[str, torch.Tensor]:
        from mlpot.model import evaluate
        from mlpot.neighbors import neighbor_list

        rcut = float(self.model.rcut)
        nl = neighbor_list(batch.positions, batch.cells, batch.pbc, rcut, batch.frame_index)
        return evaluate(
            self.model, batch.positions, batch.atom_types, batch.cells, batch.pbc, frame_index=batch.frame_index,
            nl=nl, outputs=("energy",) + ("forces",) * bool(forces) + ("virial",) * bool(virial), create_graph=create_graph,
        )


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _distributed() -> tuple[bool, int, int]:
    """(under torch.distributed?, rank, world size)."""
    on = torch.distributed.is_available() and torch.distributed.is_initialized()
    return on, (torch.distributed.get_rank() if on else 0), (torch.distributed.get_world_size() if on else 1)


def load_datasets(paths: list[str], type_map: list[str], what: str) -> list:
    """The datasets of ``paths`` in ``type_map`` (HDF5 stores lazily, :func:`mlpot.data.io.open_datasets`);
    ConfigError naming ``training.<what>.systems``."""
    from mlpot.data.io import open_datasets
    from mlpot.errors import DataError

    try:
        systems = open_datasets(paths, type_map=type_map)
    except DataError as exc:
        raise ConfigError(f"training.{what}.systems: {exc}") from None
    if not systems:
        raise ConfigError(f"training.{what}.systems: expected at least one system, found none in {paths}")
    return systems


# ---------------------------------------------------------------------------------- sel resolution
def resolve_sel(
    config: Config, datasets: Sequence[Any], start_state: Optional[dict], source: str, device: torch.device,
    info: Callable[[str], None], stat_out: Optional[dict] = None,
) -> Union[int, list[int], None]:
    """``model.descriptor.sel`` as numbers (None: a descriptor without sel). ``"auto"`` / ``"auto:R"``: the largest neighbor count of
    each type within rcut over all training frames (:func:`mlpot.data.neighbor_stat.neighbor_stat`),
    times R (1.1), truncated and rounded up to a multiple of 4 (:func:`mlpot.config.auto_sel`,
    DeePMD-kit's rule). A restart or init_model keeps the sel its weights were trained with
    (``start_state``: their state dict), since the model must be the same."""
    from mlpot.config import auto_sel, parse_auto_sel

    spec = getattr(config.model.descriptor, "sel", None)  # None: a descriptor without sel
    ratio = parse_auto_sel(spec)
    if ratio is None:
        return spec
    ntypes = len(config.model.type_map)
    from mlpot.descriptors import DESCRIPTORS

    # se_atten & co: one sel for all neighbor types (DeePMD-kit's mixed_type neighbor statistics)
    mixed = bool(getattr(DESCRIPTORS[config.model.descriptor.type], "mixed_types", False))
    old = None if start_state is None else start_state.get("descriptor.sel")
    if isinstance(old, torch.Tensor) and old.dim() == 1 and old.numel() == (1 if mixed else ntypes):
        sel = int(old[0]) if mixed else [int(n) for n in old.tolist()]
        info(f"model.descriptor.sel: {spec!r} -> {sel} (as trained, from the {source})")
        return sel
    from mlpot.data.neighbor_stat import neighbor_stat

    rcut = float(config.model.descriptor.rcut)
    stat = neighbor_stat(datasets, rcut, device=str(device))
    if stat_out is not None:  # reused for min_nbor_dist (no second pass over the data)
        stat_out["stat"] = stat
    if mixed:
        total = auto_sel([stat.max_total], ratio)[0]
        if total == 0:
            raise ConfigError(
                f"model.descriptor.sel: {spec!r} found no neighbor within rcut = {rcut:g} Å in the training data "
                f"({stat.n_frames} frames); expected a larger model.descriptor.rcut or an explicit sel"
            )
        info(
            f"model.descriptor.sel: {spec!r} -> {total} (max neighbors of all types within rcut = {rcut:g} Å over "
            f"{stat.n_frames} training frames: {stat.max_total}, x {ratio:g}, rounded up to a multiple of 4; "
            f"min pair distance {stat.min_dist:.4f} Å)"
        )
        return total
    sel = auto_sel(stat.max_nbor, ratio)
    if sum(sel) == 0:
        raise ConfigError(
            f"model.descriptor.sel: {spec!r} found no neighbor within rcut = {rcut:g} Å in the training data "
            f"({stat.n_frames} frames); expected a larger model.descriptor.rcut or an explicit sel"
        )
    info(
        f"model.descriptor.sel: {spec!r} -> {sel} (max neighbors within rcut = {rcut:g} Å over "
        f"{stat.n_frames} training frames: {[int(n) for n in stat.max_nbor]}, x {ratio:g}, rounded up "
        f"to a multiple of 4; min pair distance {stat.min_dist:.4f} Å)"
    )
    return sel


# ---------------------------------------------------------------------------------- initial state
def load_weights(model: Any, state: dict, source: Union[str, os.PathLike]) -> None:
    """Load ``state`` into ``model`` strictly; ModelError naming ``source`` if it does not fit or was
    trained with another sel."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        msg = " ".join(str(exc).split())[:300]
        raise ModelError(f"'{source}': weights do not fit the model of this config ({msg})") from None
    desc = model.descriptor
    trained = [int(n) for n in desc.sel.tolist()]
    if trained != list(desc.sel_list):
        raise ModelError(
            f"'{source}': its model was trained with model.descriptor.sel = {trained}, this config has "
            f"{list(desc.sel_list)}; expected the same sel (or 'auto', which takes the trained one)"
        )


def training_min_nbor_dist(datasets: Sequence[Any], rcut: float, device: torch.device, stat: Any = None) -> Optional[float]:
    """The shortest pair distance (Å) within ``rcut`` over all training frames (``stat``: a
    :class:`~mlpot.data.neighbor_stat.NeighborStat` already computed for them), None if no pair."""
    if stat is None:
        from mlpot.data.neighbor_stat import neighbor_stat

        stat = neighbor_stat(datasets, rcut, device=str(device))
    d = float(stat.min_dist)
    return d if math.isfinite(d) else None


def initial_statistics(model: Any, datasets: Sequence[Any], max_frames: int, seed: int) -> None:
    """Descriptor statistics of ``model`` from up to ``max_frames`` frames per training dataset (the
    only frames read besides the energies), the per-type energy bias from all energies, then the refit
    of the bias to the initial model's residual (:func:`absorb_initial_offset`)."""
    from mlpot.data import stats as stats_mod

    subs = [ds.read(stats_mod.subsample_indices(ds.n_frames, max_frames, seed)) for ds in datasets]
    # every sample has <= max_frames frames, so compute_stats uses all of them: the same statistics
    # as on the full systems, without reading them
    model.compute_stats(subs, max_frames=max_frames, seed=seed, energy_bias=False)
    counts_rows, energies = [], []
    for ds in datasets:
        e = ds.read_energies()
        if e is not None:
            counts_rows.append(np.tile(np.bincount(np.asarray(ds.atom_types, dtype=np.int64), minlength=model.ntypes), (ds.n_frames, 1)))
            energies.append(np.asarray(e, dtype=np.float64))
    if not energies:
        raise ModelError("compute_stats: no system has energies; cannot fit the per-type energy bias")
    bias = stats_mod.energy_bias_lstsq(np.concatenate(counts_rows), np.concatenate(energies))
    with torch.no_grad():
        model.fitting.energy_bias.copy_(torch.as_tensor(bias, dtype=model.fitting.energy_bias.dtype))
    absorb_initial_offset(model, subs)

def absorb_initial_offset(model: Any, samples: Sequence[Any]) -> None:
    """Refit ``model``'s per-type energy bias to (label − initial model energy) on the statistics
    frames ``samples`` (one LabeledFrames per training system).

    The bias from the statistics fits the labels alone; the randomly initialised
    fitting nets add a mean output of order 1 eV/atom on top (measured: +0.80 eV/atom on water), which
    training then has to remove. Least squares on the residual (DeePMD-kit's "change-by-statistic",
    used here at initialisation) starts training with no systematic energy offset. Exact and cheap:
    one energy-only evaluation of the statistics frames.
    """
    from mlpot.data import stats as stats_mod
    from mlpot.data.batch import to_batch
    from mlpot.model import evaluate

    counts_rows, residuals = [], []
    for sub in samples:
        if sub.energies is None:
            continue
        b = to_batch(sub, device=model.device, dtype=model.dtype, labels=False)
        out = evaluate(
            model, b.positions, b.atom_types, b.cells, b.pbc, frame_index=b.frame_index, outputs=("energy",),
        )
        residuals.append(np.asarray(sub.energies) - out["energy"].detach().cpu().numpy())
        counts_rows.append(np.tile(np.bincount(sub.atom_types, minlength=model.ntypes), (sub.n_frames, 1)))
    if not residuals:
        return
    delta = stats_mod.energy_bias_lstsq(np.concatenate(counts_rows), np.concatenate(residuals))
    with torch.no_grad():
        model.fitting.energy_bias.add_(torch.as_tensor(delta, dtype=model.fitting.energy_bias.dtype,
                                                       device=model.fitting.energy_bias.device))


def check_fresh_output_dir(output_dir: Path, disp_file: str = "lcurve.out", save_ckpt: str = "model.ckpt") -> None:
    """Refuse (:class:`ConfigError`, one line) to start a new training in ``output_dir`` when it holds a
    previous run: a non-empty ``disp_file`` (lcurve.out) or ``save_ckpt`` checkpoints."""
    if not output_dir.is_dir():
        return
    lc = output_dir / disp_file
    found = [lc.name] if lc.is_file() and lc.stat().st_size > 0 else []
    found += sorted(p.name for p in output_dir.glob(f"{Path(save_ckpt).name}*.pt"))[:2]
    if found:
        raise ConfigError(
            f"output directory '{output_dir}' holds a previous training ({', '.join(found)}): continue it with "
            f"--restart {output_dir / (Path(save_ckpt).name + '.pt')}, replace it with --overwrite, or choose "
            "another -o/--output directory"
        )


class Trainer:
    """Train an :class:`mlpot.model.EnergyModel`: the loop, lcurve.out, checkpoints, DDP.

    :meth:`from_config` builds every part from a :class:`~mlpot.config.Config` (data, sel, model,
    statistics or restart state, batches, loss, schedule, optimizer); the constructor takes the parts,
    so a caller can swap one (e.g. a :class:`~mlpot.train.data.BatchSource` with other frames).

    config: the validated config (sel resolved); model: on its device; train_src / valid_src: the
    batches (valid_src None: no validation); loss_fn, lr_schedule, optimizer (over ``model``'s
    parameters); output_dir: where lcurve.out, checkpoints and the frozen model go; seed: the training
    seed; model_config: the ``model`` section recorded in checkpoints (default ``config.model.to_dict()``);
    valid_numb_btch: validation batches per report; start_step: completed steps; quiet: no progress
    bar and no log lines; emulate_world_size: see the module docstring; log: where log lines go
    (default stderr).
    """

    def __init__(
        self,
        config: Config,
        model: torch.nn.Module,
        train_src: BatchSource,
        valid_src: Optional[BatchSource],
        loss_fn: EnergyLoss,
        lr_schedule: ExpDecayLR,
        optimizer: torch.optim.Optimizer,
        *,
        output_dir: Union[str, os.PathLike],
        seed: int,
        model_config: Optional[dict[str, Any]] = None,
        valid_numb_btch: int = 1,
        start_step: int = 0,
        quiet: bool = False,
        emulate_world_size: int = 1,
        log: Optional[Callable[[str], None]] = None,
    ):
        self.config = config
        self.distributed, self.rank, self.world_size = _distributed()
        if emulate_world_size < 1 or (self.distributed and emulate_world_size != 1):
            raise ConfigError("emulate_world_size: expected 1 under torch.distributed, or >= 1 in one process")
        self.virtual_ranks = list(range(emulate_world_size)) if not self.distributed else [self.rank]
        self.quiet = quiet
        self._log = log if log is not None else _stderr
        self.model = model
        self.device, self.dtype, self.rcut = model.device, model.dtype, float(model.rcut)
        self.model_cfg = model_config if model_config is not None else config.model.to_dict()
        self.train_src, self.valid_src = train_src, valid_src
        self.train_systems = list(train_src.systems)
        self.valid_numb_btch = int(valid_numb_btch)
        self.loss_fn, self.lr_schedule, self.optimizer = loss_fn, lr_schedule, optimizer
        self.output_dir = Path(output_dir)
        self.seed = int(seed)
        self.numb_steps = int(config.training.numb_steps)
        self.start_step = int(start_step)

        self.evaluator: torch.nn.Module = _Evaluator(self.model)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # find_unused_parameters: a batch without some element leaves that element's networks unused
            self.evaluator = DDP(
                self.evaluator, device_ids=ids, output_device=ids[0] if ids else None, find_unused_parameters=True
            )
        self._plain_evaluator = _Evaluator(self.model)  # validation on rank 0 alone: no DDP collectives
        self.history: list[dict[str, float]] = []

    @classmethod
    def from_config(
        cls,
        config: Union[Config, dict, str, os.PathLike],
        output_dir: Union[str, os.PathLike, None] = None,
        device: Optional[str] = None,
        restart: Union[str, os.PathLike, None] = None,
        init_model: Union[str, os.PathLike, None] = None,
        quiet: bool = False,
        emulate_world_size: int = 1,
        log: Optional[Callable[[str], None]] = None,
        overwrite: bool = False,
    ) -> "Trainer":
        """Build a trainer from a config (a :class:`~mlpot.config.Config`, dict or file).

        output_dir: default ``training.output_dir`` or the current directory; device: ``"cpu"``,
        ``"cuda"``, ``"cuda:1"`` (default: the config's ``training.device``, ``"auto"``); restart: a
        checkpoint to continue exactly (model, optimizer, step, RNG); init_model: a checkpoint or frozen
        model whose weights start a new training (fine-tuning); overwrite: start a new training in an
        output_dir that holds a previous run (its lcurve file or checkpoints), which is refused
        (:class:`ConfigError`) otherwise unless ``restart`` continues it; the rest as the constructor.
        """
        cfg = load_config(config)
        tr = cfg.training
        distributed, rank, _ = _distributed()
        if emulate_world_size < 1 or (distributed and emulate_world_size != 1):
            raise ConfigError("emulate_world_size: expected 1 under torch.distributed, or >= 1 in one process")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        dev = resolve_device(device or tr.device, local_rank if distributed else None)
        sink = log if log is not None else _stderr

        def info(msg: str) -> None:
            if rank == 0 and not quiet:
                sink(msg)

        restart = restart or tr.restart
        init_model = init_model or tr.init_model
        if restart and init_model:
            raise ConfigError("training.restart and training.init_model: expected at most one, found both")
        if not restart:  # before any collective: no rank has written anything yet
            out_dir = Path(output_dir or tr.output_dir or ".")
            if not overwrite:
                check_fresh_output_dir(out_dir, tr.disp_file, tr.save_ckpt)
            elif rank == 0 and out_dir.is_dir():  # --overwrite: the old run's checkpoints go (lcurve is rewritten)
                for old in out_dir.glob(f"{Path(tr.save_ckpt).name}*.pt"):
                    old.unlink(missing_ok=True)
        if restart and ckpt_io.is_frozen_model(restart):
            raise ModelError(f"--restart '{restart}': is a frozen model file, not a training checkpoint; to start a "
                             "training from its weights use --init-model (training.init_model), --restart continues a "
                             "training from its checkpoint (OUTDIR/model.ckpt.pt)")
        seed = int(tr.seed) if tr.seed is not None else int(np.random.SeedSequence().entropy % (2**31))

        # -- training data (first: sel "auto" is resolved from it before the model is built)
        type_map = list(cfg.model.type_map)
        train_systems = load_datasets(tr.training_data.systems, type_map, "training_data")
        restart_ckpt = ckpt_io.read(restart) if restart else None
        init_state = ckpt_io.read_weights(init_model) if (init_model and not restart) else None
        start_state = restart_ckpt.model if restart_ckpt is not None else init_state

        # -- model (same init on every rank: seeded before construction)
        from mlpot.model import EnergyModel

        nstat: dict = {}
        sel = resolve_sel(cfg, train_systems, start_state, "restart checkpoint" if restart else "init_model", dev, info, nstat)
        # checkpoints and the frozen model record numbers, not "auto" (config trees are frozen: copies)
        if sel is not None:
            cfg = cfg.model_copy(update={"model": cfg.model.with_descriptor(sel=sel)})
        model_section = cfg.model.with_precision(tr.precision)
        model_cfg = model_section.to_dict()
        torch.manual_seed(seed)
        model = EnergyModel.from_config(model_section, device=dev)

        # -- data batches
        td = tr.training_data
        train_src = BatchSource(
            train_systems, td.batch_size, seed, TRAIN_STREAM, td.auto_prob, td.sys_probs,
            dev, model.dtype, "training_data",
        )
        valid_src: Optional[BatchSource] = None
        valid_numb_btch = 1
        if tr.validation_data is not None:
            vd = tr.validation_data
            vsys = load_datasets(vd.systems, type_map, "validation_data")
            valid_src = BatchSource(
                vsys, vd.batch_size, seed, VALID_STREAM, vd.auto_prob, vd.sys_probs,
                dev, model.dtype, "validation_data", frame_order="random",
            )
            valid_numb_btch = int(vd.numb_btch)

        # -- schedules and loss
        lr = cfg.learning_rate
        lr_schedule = lr_schedule_from_config(lr, int(tr.numb_steps))
        lc = cfg.loss
        loss_fn = EnergyLoss(
            lr.start_lr, lc.start_pref_e, lc.limit_pref_e, lc.start_pref_f, lc.limit_pref_f,
            lc.start_pref_v, lc.limit_pref_v,
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=lr.start_lr)
        start_step = 0

        # -- starting point
        if restart_ckpt is not None:
            ckpt = restart_ckpt
            load_weights(model, ckpt.model, restart)
            try:
                if ckpt.optimizer is None:
                    raise KeyError("optimizer")
                optimizer.load_state_dict(ckpt.optimizer)
            except (KeyError, ValueError) as exc:
                raise ModelError(f"checkpoint '{restart}': optimizer state does not fit ({exc})") from None
            start_step = int(ckpt.step or 0)
            if ckpt.rng_torch is not None:
                torch.set_rng_state(ckpt.rng_torch)
            info(f"restarting from {restart} at step {start_step}")
        elif init_model:
            load_weights(model, init_state, init_model)
            info(f"initialised the model from {init_model}")
        else:
            # descriptor statistics from data_stat_nbatch batches' worth of frames per system (DeePMD-kit)
            nfr = cfg.model.data_stat_nbatch * max(train_src.batch_sizes)
            initial_statistics(model, train_systems, max_frames=nfr, seed=seed)
        # the shortest pair distance of the training data, recorded for `mlpot compress` (its table
        # range): kept on a restart; over all frames when sel "auto" has just looked at them all (no
        # second pass); else over the statistics frames (compute_stats; for init_model, the same
        # subsample), which reads no more data than the statistics do
        if restart_ckpt is not None:
            model.min_nbor_dist = restart_ckpt.min_nbor_dist
        elif nstat.get("stat") is not None:
            model.min_nbor_dist = training_min_nbor_dist(train_systems, float(model.rcut), dev, nstat["stat"])
        elif init_model:
            from mlpot.data import stats as stats_mod

            nfr = cfg.model.data_stat_nbatch * max(train_src.batch_sizes)
            subs = [ds.read(stats_mod.subsample_indices(ds.n_frames, nfr, seed)) for ds in train_systems]
            model.min_nbor_dist = stats_mod.min_pair_distance(subs, float(model.rcut), dev)

        return cls(
            cfg, model, train_src, valid_src, loss_fn, lr_schedule, optimizer,
            output_dir=output_dir or tr.output_dir or ".", seed=seed, model_config=model_cfg,
            valid_numb_btch=valid_numb_btch, start_step=start_step, quiet=quiet,
            emulate_world_size=emulate_world_size, log=log,
        )

    # ------------------------------------------------------------------ helpers
    def info(self, msg: str) -> None:
        if self.rank == 0 and not self.quiet:
            self._log(msg)

    def batch_loss(
        self, batch: Batch, lr: float, module: Optional[torch.nn.Module] = None, create_graph: bool = True
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """DeePMD loss of one batch at learning rate ``lr`` and its metrics. ``module``: an
        :class:`_Evaluator` (possibly DDP-wrapped); default the trainer's."""
        want_v = self.loss_fn.has_v and batch.virials is not None
        out = (module or self.evaluator)(batch, self.loss_fn.has_f, want_v, create_graph)
        return self.loss_fn(
            lr, batch.n_atoms, out["energy"], batch.energies,
            out.get("forces") if self.loss_fn.has_f else None, batch.forces,
            out.get("virial") if want_v else None, batch.virials if want_v else None,
        )

    def validate(self, step: int, lr: float) -> dict[str, float]:
        """natoms-weighted mean of the metrics over ``numb_btch`` validation batches (DeePMD-kit)."""
        if self.valid_src is None:
            return {}
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        for k in range(self.valid_numb_btch):
            batch = self.valid_src.batch(step, 0, k)
            _, metrics = self.batch_loss(batch, lr, module=self._plain_evaluator, create_graph=False)
            for key, v in metrics.items():
                if not math.isnan(v):
                    sums[key] = sums.get(key, 0.0) + v * batch.n_atoms
                    weights[key] = weights.get(key, 0.0) + batch.n_atoms
        return {key: (sums[key] / weights[key] if weights.get(key) else float("nan")) for key in self.loss_fn.metric_keys}

    # ------------------------------------------------------------------ checkpoints
    def training_config(self) -> dict[str, Any]:
        """The training config as checkpoints and frozen models record it: the model section with sel
        resolved to numbers, the seed actually used."""
        cfg = self.config.to_dict()
        cfg["model"] = self.model_cfg
        cfg["training"]["seed"] = self.seed
        return cfg

    def checkpoint(self, step: int) -> Checkpoint:
        """The :class:`~mlpot.train.checkpoint.Checkpoint` of the current state after ``step`` steps."""
        return Checkpoint(
            model={k: v.detach().to("cpu").clone() for k, v in self.model.state_dict().items()},
            config=self.training_config(),
            step=int(step),
            optimizer=self.optimizer.state_dict(),
            rng_torch=torch.get_rng_state(),
            min_nbor_dist=self.model.min_nbor_dist,
        )

    def checkpoint_dict(self, step: int) -> dict[str, Any]:
        """The ``torch.save`` payload of :meth:`checkpoint`."""
        return self.checkpoint(step).to_dict()

    def save_checkpoint(self, step: int) -> Path:
        """``{save_ckpt}-{step}.pt`` and the latest copy ``{save_ckpt}.pt``, atomically; prunes old ones."""
        tr = self.config.training
        return ckpt_io.write(self.checkpoint(step), self.output_dir, tr.save_ckpt, keep=tr.max_ckpt_keep)

    # ------------------------------------------------------------------ loop
    def train(self, stop_at: Optional[int] = None) -> list[dict[str, float]]:
        """Run from the current step to ``numb_steps`` (or ``stop_at`` completed steps, then save a
        checkpoint: the hook the restart test uses). Returns the reported rows (full precision):
        dicts with ``step``, ``lr`` and ``<metric>_trn`` / ``<metric>_val``."""
        tr = self.config.training
        end = self.numb_steps if stop_at is None else min(int(stop_at), self.numb_steps)
        rank0 = self.rank == 0
        fout = None
        if rank0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            path = self.output_dir / tr.disp_file
            if self.start_step > 0 and path.exists():
                lcurve.truncate(path, self.start_step)  # a restart from an older checkpoint drops later rows
            fresh = self.start_step == 0 or not path.exists() or path.stat().st_size == 0
            fout = open(path, "w" if self.start_step == 0 else "a", buffering=1)
            if fresh:
                fout.write(lcurve.header(self.loss_fn.metric_keys, self.valid_src is not None))
        if rank0 and self.start_step == 0:
            self.info(self.train_src.summary("training"))
            if self.valid_src is not None:
                self.info(self.valid_src.summary("validation"))
        bar = None
        if rank0 and not self.quiet and tr.progress_bar and sys.stderr.isatty():
            from mlpot.progress import progress_bar  # tqdm; a fixed width where the terminal reports 0 columns

            bar = progress_bar(end, unit="step", initial=self.start_step, min_total=0, leave=True)
        t0 = time.time()
        self.start_step_at_launch = self.start_step
        module = self.evaluator
        try:
            for step in range(self.start_step, end):
                lr = self.lr_schedule.value(step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.model.train()
                self.optimizer.zero_grad(set_to_none=True)
                losses, trn = [], None
                for r in self.virtual_ranks:
                    loss_r, metrics_r = self.batch_loss(self.train_src.batch(step, r), lr, module)
                    losses.append(loss_r)
                    if trn is None:
                        trn = metrics_r
                loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
                loss.backward()
                if tr.gradient_max_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), tr.gradient_max_norm)
                self.optimizer.step()
                done = step + 1
                if rank0 and (done == 1 or done % tr.disp_freq == 0):
                    self.model.eval()
                    val = self.validate(done, lr)
                    row: dict[str, float] = {"step": done, "lr": lr}
                    row.update({f"{k}_trn": trn[k] for k in self.loss_fn.metric_keys})
                    row.update({f"{k}_val": v for k, v in val.items()})
                    self.history.append(row)
                    fout.write(lcurve.line(done, lr, trn, val, self.loss_fn.metric_keys, self.valid_src is not None))
                    src = val if val else trn
                    post = {k.replace("rmse_", ""): f"{src[k]:.2e}" for k in self.loss_fn.metric_keys if k != "rmse"}
                    post["lr"] = f"{lr:.1e}"
                    if bar is not None:
                        bar.set_postfix(post, refresh=False)
                    elif not self.quiet and tr.progress_bar:
                        # no terminal (a log file, CI): one progress line per display step instead of a bar
                        self.info(_progress_line(done, end, self.start_step_at_launch, time.time() - t0, post))
                if rank0 and (done % tr.save_freq == 0 or done == end):
                    self.save_checkpoint(done)
                if bar is not None:
                    bar.update(1)
                self.start_step = done
        finally:
            if bar is not None:
                bar.close()
            if fout is not None:
                fout.close()
        if self.distributed:
            torch.distributed.barrier()
        elapsed = time.time() - t0
        if self.history:
            last = self.history[-1]
            parts = ", ".join(f"{k} {v:.3e}" for k, v in last.items() if k not in ("step", "lr"))
            self.info(f"step {int(last['step'])}: {parts} ({elapsed:.1f} s)")
        return self.history

    def freeze(self, path: Union[str, os.PathLike, None] = None) -> Optional[Path]:
        """Write the frozen model of the current state (:func:`mlpot.export.freeze`) to ``path``
        (default OUTDIR/model.pt); rank 0 only (returns None elsewhere). Returns the path."""
        if self.rank != 0:
            return None
        from mlpot.export import freeze

        target = Path(path) if path is not None else self.output_dir / "model.pt"
        ckpt = Checkpoint(model=self.model.state_dict(), config=self.training_config(), step=int(self.start_step),
                          min_nbor_dist=self.model.min_nbor_dist)
        return freeze(ckpt, target)


def _progress_line(done: int, end: int, first: int, elapsed: float, figures: dict[str, str]) -> str:
    """``step 600/1500 (40%)  e_val 1.30e-02  f_val 2.32e-01  lr 4.3e-04  2.1 step/s  ETA 7m10s``."""
    rate = (done - first) / elapsed if elapsed > 0 else float("nan")
    remaining = (end - done) / rate if rate > 0 else float("nan")
    eta = f"{int(remaining // 60)}m{int(remaining % 60):02d}s" if remaining == remaining else "?"
    figs = "  ".join(f"{k} {v}" for k, v in figures.items())
    return f"step {done}/{end} ({100 * done // end}%)  {figs}  {rate:.2f} step/s  ETA {eta}"
