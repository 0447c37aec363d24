"""The Deep Potential energy model: descriptor → per-type fitting net → atomic energies.

``E = Σ_i E_i``, ``E_i = F_{c_i}(D_i) + bias[c_i]`` (eV), with D the se_e2_a / se_e2_r descriptor
(:mod:`mlpot.descriptors`) and F one fitting net per center type (:class:`mlpot.nn.FittingNet`).
This is DeePMD-kit's "standard" energy model (PyTorch backend v3: ``deepmd/pt/model/task/fitting.py``
``GeneralFitting._forward_common`` adds ``bias_atom_e[type]``; the atomic model adds ``out_bias[type]``
in ``apply_out_stat``; our ``fitting.energy_bias`` is the sum of the two).

Build with :meth:`EnergyModel.from_config` (a :class:`~mlpot.config.model.ModelConfig` or its dict;
the descriptor class comes from :data:`mlpot.descriptors.DESCRIPTORS`). The descriptor sees one
:class:`~mlpot.descriptors.environment.Environment` (the edges within rcut of the center atoms).

:func:`evaluate` returns named outputs (energy, atom_energy, forces, virial, atom_virial). Forces and
virial come from one autograd pass with respect to the *edge vectors* ``r_ij = r_j − r_i + s·cell``::

    g_p = ∂E/∂r_p                (per pair p = (i, j, s))
    F_k = Σ_{p: i_p = k} g_p − Σ_{p: j_p = k} g_p        (eV/Å)
    W   = −Σ_p r_p ⊗ g_p         per frame (eV; DeePMD convention virial = −stress·volume)

Parameter names (stable, for weight import)::

    descriptor.embeddings.<t>.layers.<k>.{matrix,bias,idt}     type_one_side (t = neighbor type)
    descriptor.embeddings.<c>_<t>.layers.<k>.{matrix,bias,idt} otherwise (c = center type)
    descriptor.davg, descriptor.dstd  (ntypes, 4|1) env-matrix mean / std per center type
    fitting.nets.<c>.layers.<k>.{matrix,bias,idt}              last k: linear output layer
    fitting.energy_bias  (ntypes,) eV

se_atten / se_atten_v2 (:mod:`mlpot.descriptors.se_atten`; one fitting net ``fitting.nets.0`` for all
types)::

    descriptor.type_embedding.{matrix,bias}                    (ntypes, tebd_dim), (tebd_dim,)
    descriptor.embedding_net.layers.<k>.*, descriptor.embedding_net_strip.layers.<k>.*
    descriptor.attention.<l>.{in_proj,out_proj}.{matrix,bias}, descriptor.attention.<l>.layer_norm.{matrix,bias}
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from mlpot.data import stats as stats_mod
from mlpot.config.base import validate
from mlpot.config.model import ModelConfig
from mlpot.descriptors import DESCRIPTORS, SeDescriptorBase
from mlpot.descriptors.environment import Environment
from mlpot.device import resolve_device
from mlpot.errors import ConfigError, ModelError
from mlpot.fitting import EnergyFitting
from mlpot.neighbors import NeighborList, pair_vectors, neighbor_list
from mlpot.runtime import tune_malloc

# Evaluation in library use (no `mlpot` command): the same malloc thresholds as the CLI, so a
# batched evaluation does not fault its buffers in again each call (mlpot/runtime.py).
tune_malloc()


def default_device() -> torch.device:
    """CUDA when available, else CPU (:func:`mlpot.device.resolve_device`)."""
    return resolve_device(None)


#: what ``mlpot compress`` can tabulate (for error messages)
COMPRESSIBLE = "compressible: se_e2_a, se_e2_r, se_atten / se_atten_v2 with attn_layer 0 and tebd_input_mode strip"


class EnergyModel(torch.nn.Module):
    """Descriptor + fitting (see module docstring). Build with :meth:`from_config`."""

    def __init__(self, type_map: Sequence[str], descriptor: SeDescriptorBase, fitting: EnergyFitting) -> None:
        super().__init__()
        self.type_map = [str(t) for t in type_map]
        if len(self.type_map) == 0 or len(set(self.type_map)) != len(self.type_map):
            raise ConfigError(f"model.type_map: expected unique element names, got {self.type_map}")
        self.descriptor = descriptor
        self.fitting = fitting
        self.metadata: dict = {}
        #: shortest pair distance (Å) of the training data (recorded by the trainer; the table range
        #: of :meth:`compress`); None when unknown (a model trained before mlpot recorded it)
        self.min_nbor_dist: Optional[float] = None

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, model_cfg: ModelConfig | Mapping[str, Any], device: Optional[str | torch.device] = None
    ) -> "EnergyModel":
        """Build from the ``model`` section {type_map, descriptor, fitting_net}: a validated
        :class:`~mlpot.config.model.ModelConfig` or a mapping (validated here, ConfigError naming
        ``model.<key>``); the descriptor class comes from the registry. ``device``: default CUDA
        when available (:func:`mlpot.device.resolve_device`)."""
        if not isinstance(model_cfg, ModelConfig):
            if not isinstance(model_cfg, Mapping):
                raise ConfigError(f"model: expected a mapping, got {type(model_cfg).__name__}")
            model_cfg = validate(ModelConfig, dict(model_cfg), prefix=("model",))
        ntypes = len(model_cfg.type_map)
        descriptor = DESCRIPTORS[model_cfg.descriptor.type](model_cfg.descriptor, ntypes)
        fitting = EnergyFitting(
            model_cfg.fitting_net, ntypes, descriptor.dim_out, mixed_types=bool(getattr(descriptor, "mixed_types", False))
        )
        model = cls(model_cfg.type_map, descriptor, fitting)
        return model.to(resolve_device(device))

    def get_config(self) -> dict:
        """JSON-serialisable config; ``from_config(get_config())`` rebuilds the same architecture."""
        return copy.deepcopy(
            {"type_map": list(self.type_map), "descriptor": self.descriptor.get_config(), "fitting_net": self.fitting.get_config()}
        )

    # -- properties ------------------------------------------------------------------------------
    @property
    def rcut(self) -> float:
        return self.descriptor.rcut

    @property
    def ntypes(self) -> int:
        return len(self.type_map)

    @property
    def dtype(self) -> torch.dtype:
        """The model precision (the descriptor's); inputs are cast to it."""
        return self.descriptor.dtype

    @property
    def device(self) -> torch.device:
        return self.fitting.energy_bias.device

    # -- evaluation --------------------------------------------------------------------------------
    def forward(
        self,
        positions: torch.Tensor,
        atom_types: torch.Tensor,
        cells: torch.Tensor,
        frame_index: torch.Tensor,
        centers: torch.Tensor,
        neighbors: torch.Tensor,
        shifts: torch.Tensor,
        n_frames: int,
        n_centers: Optional[int] = None,
        center_range: Optional[tuple[int, int]] = None,
    ) -> dict[str, torch.Tensor]:
        """Energies of a batch of frames from positions (N, 3) Å, types (N,), cells (B, 3, 3) Å,
        frame_index (N,) and a full pair list (pairs beyond rcut allowed, they count as absent).
        Returns {"energy": (B,) eV, "atom_energy": (N,) eV}; differentiable in positions and cells.
        ``n_centers``: only the atoms ``[:n_centers]`` get atomic energies (``center_range=(0, n)``;
        give one or the other); ``center_range``: see :meth:`energy_from_edges`."""
        positions = positions.to(self.dtype)
        cells = cells.to(self.dtype)
        nl = NeighborList(centers, neighbors, shifts)
        rij = pair_vectors(positions, cells, frame_index, nl)
        if n_centers is not None or center_range is not None:
            center_range = _center_bounds(int(atom_types.shape[0]), n_centers, center_range)
        return self.energy_from_edges(rij, atom_types, frame_index, centers, neighbors, n_frames, center_range)

    def energy_from_edges(
        self,
        rij: torch.Tensor,
        atom_types: torch.Tensor,
        frame_index: torch.Tensor,
        centers: torch.Tensor,
        neighbors: torch.Tensor,
        n_frames: int,
        center_range: Optional[tuple[int, int]] = None,
    ) -> dict[str, torch.Tensor]:
        """As :meth:`forward`, from the pair vectors rij (P, 3) Å of the pair list directly.

        ``center_range=(start, stop)``: only the atoms ``[start:stop)`` get atomic energies
        (descriptor and fitting run on them only); the other atoms are neighbors only (e.g. the ghost
        atoms of a domain decomposition, ``(0, n_local)``) and pairs centered on them are ignored.
        Then "atom_energy" is (stop − start,) and "energy" (B,) sums those atoms per frame.
        ``None`` (default): every atom is a center. :func:`evaluate` uses it to process centers in
        chunks (an :class:`~mlpot.descriptors.environment.Environment` per chunk)."""
        atom_types = atom_types.to(torch.long)
        n_atoms = atom_types.shape[0]
        if n_atoms and (int(atom_types.min()) < 0 or int(atom_types.max()) >= self.ntypes):
            raise ModelError(f"atom_types: indices must lie in [0, {self.ntypes}) for type_map {self.type_map}")
        start, stop = _center_bounds(n_atoms, None, center_range)
        rij = rij.to(self.dtype)
        keep = torch.linalg.vector_norm(rij.detach(), dim=-1) < self.rcut
        center_types, frame_all = atom_types, frame_index
        if (start, stop) != (0, n_atoms):
            keep = keep & (centers < stop)
            if start:
                keep = keep & (centers >= start)
            center_types, frame_index = atom_types[start:stop], frame_index[start:stop]
        if bool(keep.all()):  # the usual case (a pair list within rcut, one chunk's centers): no gathers,
            rij_in, c_in, nb_in = rij, centers, neighbors  # whose backward would be a zero fill + index_put per chunk
        else:
            idx = torch.nonzero(keep).reshape(-1)
            rij_in, c_in, nb_in = rij[idx], centers[idx], neighbors[idx]
        if start:
            c_in = c_in - start
        env = Environment(
            rij_in, c_in, atom_types[nb_in], center_types, self.ntypes,
            frame_index=frame_all, center_offset=start, type_map=self.type_map,
        )
        if getattr(self.descriptor, "mixed_types", False):
            env.pad_type = _first_atom_types(atom_types, frame_all, frame_index)
        d = self.descriptor(env)
        atom_energy = self.fitting(d, center_types).to(self.dtype)
        energy = torch.zeros(n_frames, dtype=atom_energy.dtype, device=atom_energy.device)
        energy = energy.index_add(0, frame_index, atom_energy)
        return {"energy": energy, "atom_energy": atom_energy}

    # -- compression -------------------------------------------------------------------------------
    @property
    def compressed(self) -> bool:
        """Whether the descriptor evaluates tabulated embedding nets (:meth:`compress`)."""
        return bool(getattr(self.descriptor, "compressed", False))

    def check_compressible(self, where: str) -> None:
        """Raise ModelError (prefixed by ``where``) when this model cannot be compressed: already
        compressed, a descriptor without tables, or a variant its descriptor refuses."""
        if self.compressed:
            raise ModelError(f"{where}: is already compressed (metadata.compression); compress the uncompressed model instead")
        if not callable(getattr(self.descriptor, "compress", None)):
            raise ModelError(
                f"{where}: descriptor type '{getattr(self.descriptor, 'type_name', type(self.descriptor).__name__)}' "
                f"cannot be compressed ({COMPRESSIBLE})"
            )
        refusal = getattr(self.descriptor, "compress_refusal", None)
        reason = refusal() if callable(refusal) else None
        if reason:
            raise ModelError(f"{where}: {reason}")

    def compress(
        self, min_nbor_dist: Optional[float] = None, step: float = 0.01, extrapolate: float = 5.0,
        check_frequency: int = -1,
    ) -> dict[str, Any]:
        """Replace the embedding nets by tables (:mod:`mlpot.descriptors.tabulate`) in place; returns
        the compression record. ``min_nbor_dist`` (Å): default the recorded :attr:`min_nbor_dist`.
        ModelError: already compressed, a descriptor that cannot be compressed, no neighbor distance."""
        self.check_compressible("model")
        r_min = self.min_nbor_dist if min_nbor_dist is None else float(min_nbor_dist)
        if r_min is None:
            raise ModelError(
                "model: no minimum neighbor distance recorded (trained before mlpot recorded it): give it "
                "(mlpot compress --min-distance R, in Å, or -s SYSTEMS to compute it from the training data)"
            )
        record = self.descriptor.compress(r_min, step, extrapolate, check_frequency)
        self.min_nbor_dist = r_min
        return record

    # -- statistics --------------------------------------------------------------------------------
    def compute_stats(self, systems: Sequence[Any], max_frames: int = 20, seed: int = 0, energy_bias: bool = True) -> None:
        """Descriptor mean/std and per-type energy bias from training systems: see
        :func:`mlpot.data.stats.compute_stats`."""
        stats_mod.compute_stats(self, systems, max_frames=max_frames, seed=seed, energy_bias=energy_bias)


# ------------------------------------------------------------------------------------- evaluate
#: Per-chunk pair budget of the chunked evaluation (:func:`evaluate`, ``chunk_atoms=None``): a chunk
#: holds about this many pairs, i.e. ``budget // (mean pairs per center)`` center atoms. The autograd
#: graph of se_e2_a keeps ~7 KiB per pair within rcut for neuron [25, 50, 100] in float64, so the CPU
#: budget (~110 water atoms, ~70 MiB of graph) stays near the L3 cache and the per-atom cost flat in
#: system size; a GPU needs large chunks to amortise its kernel launches (measurements:
#: benchmarks/RESULTS.md).
CHUNK_PAIRS_CPU = 10_000
CHUNK_PAIRS_CUDA = 4_000_000
#: pairs per chunk on CPU for a compressed descriptor: its memory per pair is the 2·M1 table values
#: kept for the backward (no activations), and fewer chunks pay less per-call overhead (1.2–1.5× at
#: 1,536 water atoms before the malloc top pad of mlpot.runtime; within the noise with it,
#: benchmarks/RESULTS.md "Compression speed, session 7")
CHUNK_PAIRS_COMPRESSED_CPU = 65_536
#: the same where the numba kernels run (:mod:`mlpot.descriptors.tabulate_numba`): they keep nothing
#: per pair but rij, so one chunk can hold more; 4× the pairs gave 1.15× at 1,536 water atoms
#: (benchmarks/RESULTS.md "Compression speed, session 9")
CHUNK_PAIRS_NUMBA_CPU = 262_144


def _first_atom_types(atom_types: torch.Tensor, frame_all: torch.Tensor, frame_centers: torch.Tensor) -> torch.Tensor:
    """(n_c,) the type of the first atom of each center's frame (``frame_all`` (N,) sorted frame index
    of all atoms, ``frame_centers`` (n_c,) that of the centers): what DeePMD-kit's type-embedding
    descriptors give an empty neighbor slot (:mod:`mlpot.descriptors.se_atten`)."""
    if frame_centers.numel() == 0:
        return frame_centers.to(torch.long)
    first = torch.searchsorted(frame_all, frame_centers)
    return atom_types[first]


def _center_bounds(n_atoms: int, n_centers: Optional[int], center_range: Optional[Sequence[int]]) -> tuple[int, int]:
    """The center atoms [start, stop) from ``n_centers`` / ``center_range`` (ModelError if invalid)."""
    if center_range is not None:
        if n_centers is not None:
            raise ModelError("n_centers and center_range: give one or the other, not both")
        try:
            start, stop = (int(v) for v in center_range)
        except (TypeError, ValueError):
            raise ModelError(f"center_range: expected (start, stop), got {center_range!r}") from None
        if not 0 <= start <= stop <= n_atoms:
            raise ModelError(f"center_range: expected 0 <= start <= stop <= {n_atoms} (the number of atoms), got {center_range!r}")
        return start, stop
    if n_centers is None or n_centers == n_atoms:
        return 0, n_atoms
    if not 0 <= n_centers <= n_atoms:
        raise ModelError(f"n_centers: expected 0..{n_atoms} (the number of atoms), got {n_centers}")
    return 0, int(n_centers)


def _as_batch(model: EnergyModel, positions, atom_types, cells, pbc, frame_index):
    dev, dt = model.device, model.dtype
    positions = torch.as_tensor(positions, device=dev).to(dt)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ModelError(f"positions: expected shape (n_atoms, 3), got {tuple(positions.shape)}")
    n_atoms = positions.shape[0]
    atom_types = torch.as_tensor(atom_types, device=dev).to(torch.long).reshape(-1)
    if atom_types.shape[0] != n_atoms:
        raise ModelError(f"atom_types: expected {n_atoms} entries, got {atom_types.shape[0]}")
    cells = torch.as_tensor(cells, device=dev).to(dt)
    if cells.ndim == 2:
        cells = cells.reshape(1, 3, 3)
    if cells.ndim != 3 or cells.shape[1:] != (3, 3):
        raise ModelError(f"cells: expected shape (n_frames, 3, 3), got {tuple(cells.shape)}")
    n_frames = cells.shape[0]
    pbc = torch.as_tensor(pbc, device=dev).to(torch.bool)
    pbc = pbc.reshape(-1, 3).expand(n_frames, 3) if pbc.numel() == 3 else pbc.reshape(n_frames, 3)
    if frame_index is None:
        if n_frames != 1:
            raise ModelError(f"frame_index: required when several frames ({n_frames}) are given")
        frame_index = torch.zeros(n_atoms, dtype=torch.long, device=dev)
    frame_index = torch.as_tensor(frame_index, device=dev).to(torch.long)
    return positions, atom_types, cells, pbc, frame_index, n_frames


#: the named outputs of :func:`evaluate` (energy and atom_energy are always computed)
OUTPUTS = ("energy", "atom_energy", "forces", "virial", "atom_virial")
DEFAULT_OUTPUTS = ("energy", "forces", "virial")


def _resolve_outputs(outputs: Any) -> frozenset[str]:
    if isinstance(outputs, str):
        outputs = (outputs,)
    want = set(outputs)
    unknown = sorted(want - set(OUTPUTS))
    if unknown:
        raise ModelError(f"outputs: unknown {unknown}; expected names among {list(OUTPUTS)}")
    return frozenset(want | {"energy", "atom_energy"})


def evaluate(
    model: EnergyModel,
    positions,
    atom_types,
    cells,
    pbc,
    frame_index=None,
    nl: Optional[NeighborList] = None,
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
    create_graph: bool = False,
    n_centers: Optional[int] = None,
    chunk_atoms: Optional[int] = None,
) -> dict[str, torch.Tensor]:
    """Named outputs of a batch of frames: a dict with the keys of ``outputs`` among
    energy (B,) eV, atom_energy (N,) eV, forces (N, 3) eV/Å = −∂E/∂r, virial (B, 3, 3) eV
    = −Σ_pairs r_ij ⊗ ∂E/∂r_ij, atom_virial (N, 3, 3) eV (each pair's −r_ij ⊗ ∂E/∂r_ij split half to
    i, half to j); energy and atom_energy are always present.

    positions (N, 3) Å; atom_types (N,); cells (B, 3, 3) or (3, 3) Å (zeros where not periodic);
    pbc (B, 3) or (3,) bool; frame_index (N,) (default: one frame); nl: a full pair list (computed
    with cutoff ``model.rcut`` when None; may extend beyond rcut). ``create_graph=True`` keeps the
    graph so that forces/virial can be differentiated again (force training).
    ``n_centers``: only atoms ``[:n_centers]`` carry energy (the rest are neighbors only, e.g. ghost
    atoms; see :meth:`EnergyModel.energy_from_edges`): atom_energy is then (n_centers,), energy their
    sum, and forces (N, 3) and virial are the derivatives of that energy (forces on the neighbor-only
    atoms included). Default None: every atom.

    The center atoms are processed in chunks of ``chunk_atoms`` consecutive atoms (chunks may cross
    frame boundaries): per chunk, the atomic energies of its centers from the pairs centered on them,
    one backward pass to ∂E/∂r_ij of those pairs, then forces, virial and atom_virial are accumulated
    and the chunk's graph is freed, so memory scales with the chunk, not the system. One pass over
    all atoms is the single-chunk case (``chunk_atoms=0``, and always with ``create_graph=True``).
    Results equal the one-pass evaluation up to floating-point summation order. Default None:
    ``CHUNK_PAIRS_CPU`` / ``CHUNK_PAIRS_CUDA`` pairs per chunk divided by the mean number of pairs per
    center. Energies-only calls keep their graph when autograd is on (differentiable energies).
    """
    want = _resolve_outputs(outputs)
    positions, atom_types, cells, pbc, frame_index, n_frames = _as_batch(model, positions, atom_types, cells, pbc, frame_index)
    if nl is None:
        nl = neighbor_list(positions.detach(), cells.detach(), pbc, model.rcut, frame_index)
    nl = NeighborList(*(t.to(model.device) for t in nl))
    n_atoms = positions.shape[0]
    bounds = None if create_graph else _chunk_bounds(model, nl, n_atoms, n_centers, chunk_atoms)
    if bounds is None:
        bounds = [0, _center_bounds(n_atoms, n_centers, None)[1]]
    return _evaluate_chunked(model, positions, atom_types, cells, frame_index, nl, n_frames, bounds, want, create_graph)


def _accumulate_derivatives(
    result: dict[str, torch.Tensor],
    g: torch.Tensor,
    rij: torch.Tensor,
    nl: NeighborList,
    frame_index: torch.Tensor,
    n_atoms: int,
    n_frames: int,
    forces: bool,
    virial: bool,
    atom_virial: bool,
    inplace: bool = False,
) -> None:
    """Add the forces / virial / atom_virial of the pairs ``nl`` with ∂E/∂r_ij = g (P, 3) to ``result``
    (creating zero tensors on first use): F_i += g, F_j −= g; W_frame(i) += −r ⊗ g; W_i, W_j += −r ⊗ g / 2.
    ``inplace``: accumulate in place (chunked evaluation, no graph: no copy of the (N, 3) arrays per chunk)."""

    def add(key: str, shape: tuple[int, ...], index: torch.Tensor, values: torch.Tensor) -> None:
        if key not in result:
            result[key] = torch.zeros(shape, dtype=g.dtype, device=g.device)
        if inplace:
            result[key].index_add_(0, index, values)
        else:
            result[key] = result[key].index_add(0, index, values)

    if forces:
        add("forces", (n_atoms, 3), nl.centers, g)
        add("forces", (n_atoms, 3), nl.neighbors, -g)
    if virial and n_frames == 1:  # one frame: W = −Σ_pairs r ⊗ g is one (3, P) × (P, 3) product
        add("virial", (1, 3, 3), nl.centers.new_zeros(1), -(rij.transpose(0, 1) @ g)[None])
    if (virial and n_frames > 1) or atom_virial:
        pair_w = -rij[:, :, None] * g[:, None, :]  # (P, 3, 3)
        if virial and n_frames > 1:
            add("virial", (n_frames, 3, 3), frame_index[nl.centers], pair_w)
        if atom_virial:
            half = 0.5 * pair_w
            add("atom_virial", (n_atoms, 3, 3), nl.centers, half)
            add("atom_virial", (n_atoms, 3, 3), nl.neighbors, half)


def _chunk_bounds(
    model: EnergyModel, nl: NeighborList, n_atoms: int, n_centers: Optional[int], chunk_atoms: Optional[int]
) -> Optional[list[int]]:
    """Chunk boundaries [0, b1, ..., n_c] over the center atoms, or None for a single pass."""
    _, n_c = _center_bounds(n_atoms, n_centers, None)
    if chunk_atoms is None:
        if model.device.type == "cuda":
            budget = CHUNK_PAIRS_CUDA
        else:
            budget = CHUNK_PAIRS_CPU
            if getattr(model.descriptor, "compressed", False):
                numba_tables = getattr(model.descriptor, "uses_numba_tables", None)
                budget = CHUNK_PAIRS_NUMBA_CPU if callable(numba_tables) and numba_tables() else CHUNK_PAIRS_COMPRESSED_CPU
        n_pairs = int(nl.centers.shape[0]) if n_c == n_atoms else int((nl.centers < n_c).sum())
        per_center = getattr(model.descriptor, "chunk_pairs_per_center", None)
        if per_center is not None:  # a descriptor whose memory is not ∝ pairs (se_atten: atoms × sel²)
            n_pairs = max(n_pairs, int(per_center()) * n_c)
        chunk = max(1, (budget * n_c) // max(1, n_pairs)) if n_c else 1
    else:
        if isinstance(chunk_atoms, bool) or int(chunk_atoms) != chunk_atoms or chunk_atoms < 0:
            raise ModelError(f"chunk_atoms: expected a non-negative int (0: no chunking), got {chunk_atoms!r}")
        chunk = int(chunk_atoms)
    if chunk == 0 or chunk >= n_c:
        return None
    return list(range(0, n_c, chunk)) + [n_c]


def _evaluate_chunked(
    model: EnergyModel,
    positions: torch.Tensor,
    atom_types: torch.Tensor,
    cells: torch.Tensor,
    frame_index: torch.Tensor,
    nl: NeighborList,
    n_frames: int,
    bounds: list[int],
    outputs: frozenset[str],
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """:func:`evaluate` over the center chunks [bounds[k], bounds[k+1]) (one chunk: one pass over
    the whole pair list, the graph kept with ``create_graph``)."""
    want_f, want_v, want_av = ("forces" in outputs), ("virial" in outputs), ("atom_virial" in outputs)
    need_grad = want_f or want_v or want_av
    n_atoms = positions.shape[0]
    single = len(bounds) == 2
    if single:
        sorted_nl, ptr = nl, [0, int(nl.centers.shape[0])]
    else:
        centers = nl.centers
        # pairs grouped by center: chunk k holds the sorted pairs [ptr[k], ptr[k+1])
        if centers.numel() > 1 and bool((centers[1:] < centers[:-1]).any()):
            order = torch.argsort(centers, stable=True)
            sorted_nl = NeighborList(centers[order], nl.neighbors[order], nl.shifts[order])
        else:
            sorted_nl = nl
        bt = torch.tensor(bounds, dtype=centers.dtype, device=centers.device)
        ptr = torch.searchsorted(sorted_nl.centers, bt).tolist()
        if need_grad:
            positions, cells = positions.detach(), cells.detach()
    grad_enabled = torch.is_grad_enabled()
    energy: Optional[torch.Tensor] = None
    atom_energies: list[torch.Tensor] = []
    result: dict[str, torch.Tensor] = {}
    for k in range(len(bounds) - 1):
        part = sorted_nl if single else NeighborList(*(t[ptr[k] : ptr[k + 1]] for t in sorted_nl))
        with torch.enable_grad() if need_grad else contextlib.nullcontext():
            rij = pair_vectors(positions, cells, frame_index, part)
            if need_grad and not rij.requires_grad:
                rij.requires_grad_(True)
            out = model.energy_from_edges(
                rij, atom_types, frame_index, part.centers, part.neighbors, n_frames, center_range=(bounds[k], bounds[k + 1])
            )
            if need_grad:
                (g,) = torch.autograd.grad(
                    out["energy"].sum(), rij, create_graph=create_graph, retain_graph=create_graph, allow_unused=True
                )
                if g is None:
                    g = torch.zeros_like(rij)
                _accumulate_derivatives(
                    result, g, rij if create_graph else rij.detach(), part, frame_index, n_atoms, n_frames,
                    want_f, want_v, want_av, inplace=not create_graph,
                )
                if not single:
                    out = {key: v.detach() for key, v in out.items()}
        energy = out["energy"] if energy is None else energy + out["energy"]
        atom_energies.append(out["atom_energy"])
        del out, rij
    assert energy is not None
    result["energy"] = energy
    result["atom_energy"] = atom_energies[0] if single else torch.cat(atom_energies)
    if not grad_enabled:
        result = {key: v.detach() for key, v in result.items()}
    return {key: result[key] for key in OUTPUTS if key in result}


__all__ = ["EnergyModel", "EnergyFitting", "evaluate", "OUTPUTS", "DEFAULT_OUTPUTS", "default_device", "CHUNK_PAIRS_CPU", "CHUNK_PAIRS_CUDA",
           "CHUNK_PAIRS_COMPRESSED_CPU", "CHUNK_PAIRS_NUMBA_CPU"]
