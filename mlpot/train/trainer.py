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

Checkpoint layout (``torch.save``; loadable with ``torch.load(..., weights_only=True)``)::

    {"model": state_dict, "optimizer": Adam state_dict, "step": int (completed steps),
     "config": JSON string (the training config; its "model" section is what
               EnergyModel.from_config takes), "rng_torch": uint8 tensor, "mlpot_version": str,
     "format": "mlpot-checkpoint"}
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from mlpot.atomic_io import atomic_path
from mlpot.config import Config, load_config
from mlpot.errors import ConfigError, ModelError
from mlpot.train.data import TRAIN_STREAM, VALID_STREAM, Batch, BatchSource
from mlpot.train.loss import EnergyLoss
from mlpot.train.schedule import ExpDecayLR, lr_schedule_from_config

CHECKPOINT_FORMAT = "mlpot-checkpoint"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: Optional[str], local_rank: int = 0) -> torch.device:
    """``None``/``"auto"`` → CUDA when available (``cuda:<local_rank>`` under torchrun), else CPU."""
    if device in (None, "auto"):
        device = default_device()
    if device == "cuda" and torch.distributed.is_available() and torch.distributed.is_initialized():
        device = f"cuda:{local_rank}"
    return torch.device(device)


def read_checkpoint(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """A trainer checkpoint, loaded weights-only; :class:`ModelError` if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"checkpoint '{p}': no such file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise ModelError(f"checkpoint '{p}': not a weights-only torch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ModelError(f"checkpoint '{p}': expected a trainer checkpoint dict with key 'model'")
    return ckpt


def _truncate_lcurve(path: Path, last_step: int) -> None:
    """Keep the header and the rows of steps <= ``last_step`` (atomic rewrite)."""
    lines = path.read_text().splitlines(keepends=True)
    keep = [ln for ln in lines if ln.startswith("#") or not ln.strip() or int(ln.split()[0]) <= last_step]
    if len(keep) != len(lines):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(keep))


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


class Trainer:
    """Train an :class:`mlpot.model.EnergyModel` from a :class:`~mlpot.config.Config`.

    output_dir: where lcurve.out, checkpoints and the frozen model go (default: ``training.output_dir``
    or the current directory); device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (default: the config's
    ``training.device``, ``"auto"``); restart: a checkpoint to continue exactly (model, optimizer, step);
    init_model: a checkpoint or frozen model whose weights start a new training (fine-tuning);
    quiet: no progress bar and no log lines; emulate_world_size: see module docstring.
    """

    def __init__(
        self,
        config: Union[Config, dict, str, os.PathLike],
        output_dir: Union[str, os.PathLike, None] = None,
        device: Optional[str] = None,
        restart: Union[str, os.PathLike, None] = None,
        init_model: Union[str, os.PathLike, None] = None,
        quiet: bool = False,
        emulate_world_size: int = 1,
        log: Optional[Callable[[str], None]] = None,
    ):
        self.config = load_config(config)
        cfg = self.config
        tr = cfg.training
        self.distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        self.world_size = torch.distributed.get_world_size() if self.distributed else 1
        if emulate_world_size < 1 or (self.distributed and emulate_world_size != 1):
            raise ConfigError("emulate_world_size: expected 1 under torch.distributed, or >= 1 in one process")
        self.virtual_ranks = list(range(emulate_world_size)) if not self.distributed else [self.rank]
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(device or tr.device, self.local_rank)
        self.output_dir = Path(output_dir or tr.output_dir or ".")
        self.quiet = quiet
        self._log = log if log is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
        restart = restart or tr.restart
        init_model = init_model or tr.init_model
        if restart and init_model:
            raise ConfigError("training.restart and training.init_model: expected at most one, found both")
        self.seed = int(tr.seed) if tr.seed is not None else int(np.random.SeedSequence().entropy % (2**31))
        self.numb_steps = int(tr.numb_steps)

        # -- training data (first: sel "auto" is resolved from it before the model is built)
        type_map = list(cfg.model.type_map)
        self.train_systems = self._load(tr.training_data.systems, type_map, "training_data")
        restart_ckpt = read_checkpoint(restart) if restart else None
        init_state = self._read_init_state(init_model) if (init_model and not restart) else None
        start_state = restart_ckpt["model"] if restart_ckpt is not None else init_state

        # -- model (same init on every rank: seeded before construction)
        from mlpot.model import EnergyModel

        sel = self._resolve_sel(start_state, "restart checkpoint" if restart else "init_model")
        # checkpoints and the frozen model record numbers, not "auto" (config trees are frozen: copies)
        if sel is not None:
            cfg = self.config = cfg.model_copy(update={"model": cfg.model.with_descriptor(sel=sel)})
        model_cfg = cfg.model.with_precision(tr.precision)
        self.model_cfg = model_cfg.to_dict()
        torch.manual_seed(self.seed)
        self.model = EnergyModel.from_config(model_cfg, device=self.device)
        self.dtype = next(p.dtype for p in self.model.parameters() if p.is_floating_point())
        self.rcut = float(self.model.rcut)

        # -- data batches
        td = tr.training_data
        self.train_src = BatchSource(
            self.train_systems, td.batch_size, self.seed, TRAIN_STREAM, td.auto_prob, td.sys_probs,
            self.device, self.dtype, "training_data",
        )
        self.valid_src: Optional[BatchSource] = None
        self.valid_numb_btch = 1
        if tr.validation_data is not None:
            vd = tr.validation_data
            vsys = self._load(vd.systems, type_map, "validation_data")
            self.valid_src = BatchSource(
                vsys, vd.batch_size, self.seed, VALID_STREAM, vd.auto_prob, vd.sys_probs,
                self.device, self.dtype, "validation_data", frame_order="random",
            )
            self.valid_numb_btch = int(vd.numb_btch)

        # -- schedules and loss
        lr = cfg.learning_rate
        self.lr_schedule: ExpDecayLR = lr_schedule_from_config(lr, self.numb_steps)
        lc = cfg.loss
        self.loss_fn = EnergyLoss(
            lr.start_lr, lc.start_pref_e, lc.limit_pref_e, lc.start_pref_f, lc.limit_pref_f,
            lc.start_pref_v, lc.limit_pref_v,
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr.start_lr)
        self.start_step = 0

        # -- starting point
        if restart_ckpt is not None:
            ckpt = restart_ckpt
            self._load_state(ckpt["model"], restart)
            try:
                self.optimizer.load_state_dict(ckpt["optimizer"])
            except (KeyError, ValueError) as exc:
                raise ModelError(f"checkpoint '{restart}': optimizer state does not fit ({exc})") from None
            self.start_step = int(ckpt.get("step", 0))
            if isinstance(ckpt.get("rng_torch"), torch.Tensor):
                torch.set_rng_state(ckpt["rng_torch"])
            self.info(f"restarting from {restart} at step {self.start_step}")
        elif init_model:
            self._load_state(init_state, init_model)
            self.info(f"initialised the model from {init_model}")
        else:
            # descriptor statistics from data_stat_nbatch batches' worth of frames per system (DeePMD-kit)
            nfr = cfg.model.data_stat_nbatch * max(self.train_src.batch_sizes)
            self.model.compute_stats(self.train_systems, max_frames=nfr, seed=self.seed)
            self._absorb_initial_offset(max_frames=nfr)

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

    # ------------------------------------------------------------------ helpers
    def _absorb_initial_offset(self, max_frames: int) -> None:
        """Refit the per-type energy bias to (label − initial model energy) on the statistics frames.

        The bias from :meth:`EnergyModel.compute_stats` fits the labels alone; the randomly initialised
        fitting nets add a mean output of order 1 eV/atom on top (measured: +0.80 eV/atom on water), which
        training then has to remove. Least squares on the residual (DeePMD-kit's "change-by-statistic",
        used here at initialisation) starts training with no systematic energy offset. Exact and cheap:
        one energy-only evaluation of the statistics frames.
        """
        from mlpot.data import stats as stats_mod
        from mlpot.model import evaluate

        model = self.model
        counts_rows, residuals = [], []
        for system in self.train_systems:
            if system.energies is None:
                continue
            idx = stats_mod.subsample_indices(system.n_frames, max_frames, self.seed)
            sub = system.subset(idx)
            dev, dt = model.device, model.dtype
            nf = sub.n_frames
            out = evaluate(
                model,
                torch.as_tensor(sub.positions, dtype=dt, device=dev).reshape(-1, 3),
                torch.as_tensor(sub.atom_types, device=dev).repeat(nf),
                torch.as_tensor(sub.cells, dtype=dt, device=dev),
                torch.as_tensor(np.broadcast_to(sub.pbc, (nf, 3)).copy(), device=dev),
                frame_index=torch.arange(nf, device=dev).repeat_interleave(sub.n_atoms),
                outputs=("energy",),
            )
            residuals.append(np.asarray(sub.energies) - out["energy"].detach().cpu().numpy())
            counts_rows.append(np.tile(np.bincount(sub.atom_types, minlength=model.ntypes), (nf, 1)))
        if not residuals:
            return
        delta = stats_mod.energy_bias_lstsq(np.concatenate(counts_rows), np.concatenate(residuals))
        with torch.no_grad():
            model.fitting.energy_bias.add_(torch.as_tensor(delta, dtype=model.fitting.energy_bias.dtype,
                                                           device=model.fitting.energy_bias.device))

    def info(self, msg: str) -> None:
        if self.rank == 0 and not self.quiet:
            self._log(msg)

    def _load(self, paths: list[str], type_map: list[str], what: str):
        from mlpot.data.io import load_systems
        from mlpot.errors import DataError

        try:
            systems = load_systems(paths, type_map=type_map)
        except DataError as exc:
            raise ConfigError(f"training.{what}.systems: {exc}") from None
        if not systems:
            raise ConfigError(f"training.{what}.systems: expected at least one system, found none in {paths}")
        return systems

    def _resolve_sel(self, start_state: Optional[dict] = None, source: str = "") -> Union[int, list[int], None]:
        """``model.descriptor.sel`` as numbers. ``"auto"`` / ``"auto:R"``: the largest neighbor count of
        each type within rcut over all training frames (:func:`mlpot.data.neighbor_stat.neighbor_stat`),
        times R (1.1), truncated and rounded up to a multiple of 4 (:func:`mlpot.config.auto_sel`,
        DeePMD-kit's rule). A restart or init_model keeps the sel its weights were trained with
        (``start_state``: their state dict), since the model must be the same."""
        from mlpot.config import auto_sel, parse_auto_sel

        spec = getattr(self.config.model.descriptor, "sel", None)  # None: a descriptor without sel
        ratio = parse_auto_sel(spec)
        if ratio is None:
            return spec
        ntypes = len(self.config.model.type_map)
        old = None if start_state is None else start_state.get("descriptor.sel")
        if isinstance(old, torch.Tensor) and old.dim() == 1 and old.numel() == ntypes:
            sel = [int(n) for n in old.tolist()]
            self.info(f"model.descriptor.sel: {spec!r} -> {sel} (as trained, from the {source})")
            return sel
        from mlpot.data.neighbor_stat import neighbor_stat

        rcut = float(self.config.model.descriptor.rcut)
        stat = neighbor_stat(self.train_systems, rcut, device=str(self.device))
        sel = auto_sel(stat.max_nbor, ratio)
        if sum(sel) == 0:
            raise ConfigError(
                f"model.descriptor.sel: {spec!r} found no neighbor within rcut = {rcut:g} Å in the training data "
                f"({stat.n_frames} frames); expected a larger model.descriptor.rcut or an explicit sel"
            )
        self.info(
            f"model.descriptor.sel: {spec!r} -> {sel} (max neighbors within rcut = {rcut:g} Å over "
            f"{stat.n_frames} training frames: {[int(n) for n in stat.max_nbor]}, x {ratio:g}, rounded up "
            f"to a multiple of 4; min pair distance {stat.min_dist:.4f} Å)"
        )
        return sel

    def _load_state(self, state: dict, source: Union[str, os.PathLike]) -> None:
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            msg = " ".join(str(exc).split())[:300]
            raise ModelError(f"'{source}': weights do not fit the model of this config ({msg})") from None
        desc = self.model.descriptor
        trained = [int(n) for n in desc.sel.tolist()]
        if trained != list(desc.sel_list):
            raise ModelError(
                f"'{source}': its model was trained with model.descriptor.sel = {trained}, this config has "
                f"{list(desc.sel_list)}; expected the same sel (or 'auto', which takes the trained one)"
            )

    def _read_init_state(self, path: Union[str, os.PathLike]) -> dict:
        """The state dict of a training checkpoint or a frozen mlpot model (init_model)."""
        try:
            ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"init_model '{path}': cannot be read weights-only ({type(exc).__name__}: {exc})") from None
        if isinstance(ckpt, dict) and ckpt.get("format") == "mlpot-model":
            from mlpot.export import load_model

            state = load_model(path, device="cpu").state_dict()
        elif isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
            state = ckpt["model"]
        else:
            raise ModelError(f"init_model '{path}': expected a training checkpoint or a frozen mlpot model")
        return state

    def batch_loss(
        self, batch: Batch, lr: float, module: Optional[torch.nn.Module] = None, create_graph: bool = True
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """DeePMD loss of one batch at learning rate ``lr`` and its metrics. ``module``: an
        :class:`_Evaluator` (possibly DDP-wrapped); default the trainer's."""
        want_v = self.loss_fn.has_v and batch.virials is not None
        out = (module or self.evaluator)(batch, self.loss_fn.has_f, want_v, create_graph)
        want_v = self.loss_fn.has_v and batch.virials is not None
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

    # ------------------------------------------------------------------ lcurve
    def _lcurve_header(self) -> str:
        s = "# %5s" % "step"
        for k in self.loss_fn.metric_keys:
            s += ("   %11s %11s" % (k + "_val", k + "_trn")) if self.valid_src is not None else ("   %11s" % (k + "_trn"))
        return s + "   %8s\n" % "lr"

    def _lcurve_line(self, step: int, lr: float, trn: dict, val: dict) -> str:
        s = "%7d" % step
        for k in self.loss_fn.metric_keys:
            s += ("   %11.2e %11.2e" % (val[k], trn[k])) if self.valid_src is not None else ("   %11.2e" % trn[k])
        return s + "   %8.1e\n" % lr

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dict(self, step: int) -> dict[str, Any]:
        from mlpot import __version__

        cfg = self.config.to_dict()
        cfg["model"] = self.model_cfg
        cfg["training"]["seed"] = self.seed
        return {
            "format": CHECKPOINT_FORMAT,
            "model": {k: v.detach().to("cpu").clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "step": int(step),
            "config": json.dumps(cfg, sort_keys=True),
            "rng_torch": torch.get_rng_state(),
            "mlpot_version": __version__,
        }

    def save_checkpoint(self, step: int) -> Path:
        """``{save_ckpt}-{step}.pt`` and the latest copy ``{save_ckpt}.pt``, atomically; prunes old ones."""
        prefix = self.config.training.save_ckpt
        self.output_dir.mkdir(parents=True, exist_ok=True)
        numbered = self.output_dir / f"{prefix}-{step}.pt"
        latest = self.output_dir / f"{prefix}.pt"
        payload = self.checkpoint_dict(step)
        with atomic_path(numbered) as tmp:
            torch.save(payload, tmp)
        with atomic_path(latest) as tmp:
            shutil.copyfile(numbered, tmp)
        keep = self.config.training.max_ckpt_keep
        olds = []
        for f in self.output_dir.glob(f"{prefix}-*.pt"):
            tail = f.name[len(prefix) + 1 : -3]
            if tail.isdigit():
                olds.append((int(tail), f))
        for _, f in sorted(olds)[:-keep]:
            f.unlink(missing_ok=True)
        return latest

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
                _truncate_lcurve(path, self.start_step)  # a restart from an older checkpoint drops later rows
            fresh = self.start_step == 0 or not path.exists() or path.stat().st_size == 0
            fout = open(path, "w" if self.start_step == 0 else "a", buffering=1)
            if fresh:
                fout.write(self._lcurve_header())
        if rank0 and self.start_step == 0:
            self.info(self.train_src.summary("training"))
            if self.valid_src is not None:
                self.info(self.valid_src.summary("validation"))
        bar = None
        if rank0 and not self.quiet and tr.progress_bar and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=end, initial=self.start_step, dynamic_ncols=True, unit="step", file=sys.stderr)
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
                    fout.write(self._lcurve_line(done, lr, trn, val))
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
        """Write the frozen model (``mlpot.export.save_model``) to ``path`` (default OUTDIR/model.pt);
        rank 0 only. Returns the path, or None where no export module is available."""
        if self.rank != 0:
            return None
        try:
            from mlpot.export import save_model
        except ImportError:
            return None
        cfg = self.config.to_dict()
        cfg["model"] = self.model_cfg
        cfg["training"]["seed"] = self.seed
        target = Path(path) if path is not None else self.output_dir / "model.pt"
        return save_model(self.model, target, metadata={"training_config": cfg, "step": int(self.start_step)})


def _progress_line(done: int, end: int, first: int, elapsed: float, figures: dict[str, str]) -> str:
    """``step 600/1500 (40%)  e_val 1.30e-02  f_val 2.32e-01  lr 4.3e-04  2.1 step/s  ETA 7m10s``."""
    rate = (done - first) / elapsed if elapsed > 0 else float("nan")
    remaining = (end - done) / rate if rate > 0 else float("nan")
    eta = f"{int(remaining // 60)}m{int(remaining % 60):02d}s" if remaining == remaining else "?"
    figs = "  ".join(f"{k} {v}" for k, v in figures.items())
    return f"step {done}/{end} ({100 * done // end}%)  {figs}  {rate:.2f} step/s  ETA {eta}"
