"""Test helpers shipped with the package (as ASE ships ``ase.calculators.test``).

A new descriptor, fitting or MD potential gets the same independent checks as the built-in ones:

* :func:`check_forces_fd`: forces against a fourth-order central finite difference of the energy;
* :func:`check_virial_fd`: the virial (eV, DeePMD convention W = −stress·V) against the derivative of
  the energy under a homogeneous strain of positions and cell;
* :func:`check_rotation`: energy invariant, forces and virial covariant under a rotation;
* :func:`check_batch_independence`: frames evaluated together equal frames evaluated alone;
* :func:`fd_forces`, :func:`fd_virial`: the finite-difference estimates themselves (second or fourth
  order; :func:`atoms_energy_fn` turns any ASE calculator into an energy function);
* :func:`tiny_model`: a small random model (config: :func:`tiny_model_config`) with one of several
  statistics recipes (:data:`STATS_RECIPES`, DeePMD-like by default), built through the public config
  path (``EnergyModel.from_config``), for fast tests; :func:`argon_atoms`: fcc argon crystals for
  pair-potential and MD tests.

The checks take plain callables, so they work for anything that maps positions (N, 3) Å and a cell
(3, 3) Å to an energy in eV: ``energy_fn(positions, cell) -> float``. :func:`model_energy_fn` and
:func:`model_outputs` build those callables for an :class:`mlpot.model.EnergyModel`. A failed check
raises ``AssertionError`` naming the component, the value and the finite-difference estimate.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

EnergyFn = Callable[[torch.Tensor, torch.Tensor], float]


def fd_derivative(fun: Callable[[float], float], h: float = 1e-3, order: int = 4) -> float:
    """Central difference of a scalar function of a step t, at t = 0: ``order`` 4 (error O(h⁴), four
    evaluations) or 2 (error O(h²), two evaluations: (f(h) − f(−h)) / 2h)."""
    if order == 4:
        return (8.0 * (fun(h) - fun(-h)) - (fun(2 * h) - fun(-2 * h))) / (12.0 * h)
    if order == 2:
        return (fun(h) - fun(-h)) / (2.0 * h)
    raise ValueError(f"fd_derivative: order must be 2 or 4, found {order}")


def fd_forces(
    energy_fn: EnergyFn,
    positions: Any,
    cell: Any,
    components: Sequence[tuple[int, int]],
    h: float = 1e-3,
    order: int = 4,
) -> np.ndarray:
    """−∂E/∂r_ak (eV/Å) by central finite differences for each (atom a, axis k) of ``components``:
    an array (len(components),). positions (N, 3) Å, cell (3, 3) Å (passed through unchanged)."""
    positions = torch.as_tensor(positions, dtype=torch.float64)
    out = np.zeros(len(components))
    for n, (a, k) in enumerate(components):

        def e_of(t: float) -> float:
            p = positions.clone()
            p[a, k] += t
            return energy_fn(p, cell)

        out[n] = -fd_derivative(e_of, h, order)
    return out


VIRIAL_COMPONENTS = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (2, 0))
#: the Voigt order of ASE's stress: xx, yy, zz, yz, xz, xy
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def fd_virial(
    energy_fn: EnergyFn,
    positions: Any,
    cell: Any,
    components: Sequence[tuple[int, int]] = VIRIAL_COMPONENTS,
    h: float = 1e-3,
    order: int = 4,
    symmetric: bool = False,
) -> np.ndarray:
    """−∂E/∂ε_ab (eV) by central finite differences under the strain r → r(1 + ε), cell → cell(1 + ε),
    for each (a, b) of ``components``: an array (len(components),). ``symmetric``: the strain is
    symmetric, ε_ab = ε_ba = t/2 (t on the diagonal), so the result is the symmetrised virial, and
    −result/V the stress (eV/Å³) as ASE defines it."""
    positions = torch.as_tensor(positions, dtype=torch.float64)
    cell = torch.as_tensor(cell, dtype=torch.float64)
    out = np.zeros(len(components))
    for n, (a, b) in enumerate(components):

        def e_of(t: float) -> float:
            if symmetric:
                eps = torch.zeros(3, 3, dtype=torch.float64)
                eps[a, b] += 0.5 * t
                eps[b, a] += 0.5 * t
                m = torch.eye(3, dtype=torch.float64) + eps
            else:
                m = torch.eye(3, dtype=torch.float64)
                m[a, b] += t
            return energy_fn(positions @ m, cell @ m)

        out[n] = -fd_derivative(e_of, h, order)
    return out


def check_forces_fd(
    energy_fn: EnergyFn,
    forces: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    components: Sequence[tuple[int, int]],
    h: float = 1e-3,
    rtol: float = 1e-6,
    order: int = 4,
) -> None:
    """``forces[a, k]`` (eV/Å) equals −∂E/∂r_ak by finite differences (:func:`fd_forces`) for each
    (atom a, axis k).

    The tolerance is relative to max(|F_fd|, max|F|), so components near zero are judged on the
    scale of the whole force field."""
    scale = float(torch.as_tensor(forces).abs().max())
    for (a, k), f_fd in zip(components, fd_forces(energy_fn, positions, cell, components, h, order)):
        f = float(forces[a, k])
        if not abs(f_fd - f) < rtol * max(abs(f_fd), scale):
            raise AssertionError(f"force[{a}, {k}] = {f!r} eV/Å but −dE/dr by finite differences = {f_fd!r}")


def check_virial_fd(
    energy_fn: EnergyFn,
    virial: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    components: Sequence[tuple[int, int]] = VIRIAL_COMPONENTS,
    h: float = 1e-3,
    rtol: float = 1e-6,
    order: int = 4,
) -> None:
    """``virial[a, b]`` (eV) equals −∂E/∂ε_ab under the strain r → r(1 + ε), cell → cell(1 + ε)
    (:func:`fd_virial`); tolerance relative to max(|W_fd|, max|W|)."""
    scale = float(torch.as_tensor(virial).abs().max())
    for (a, b), w_fd in zip(components, fd_virial(energy_fn, positions, cell, components, h, order)):
        w = float(virial[a, b])
        if not abs(w_fd - w) < rtol * max(abs(w_fd), scale):
            raise AssertionError(f"virial[{a}, {b}] = {w!r} eV but −dE/dε by finite differences = {w_fd!r}")


def atoms_energy_fn(atoms: Any) -> EnergyFn:
    """``(positions, cell) -> energy`` (eV) of a copy of the ASE ``atoms`` with the same calculator
    (``atoms`` itself is never moved): finite differences of any ASE calculator."""
    work = atoms.copy()
    work.calc = atoms.calc

    def fn(positions: Any, cell: Any) -> float:
        work.set_cell(np.asarray(cell), scale_atoms=False)
        work.set_positions(np.asarray(positions))
        return float(work.get_potential_energy())

    return fn


def random_rotation(seed: int = 0) -> torch.Tensor:
    """A random proper rotation matrix (3, 3), float64 (QR of a Gaussian matrix, det +1)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def check_rotation(
    outputs_fn: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    positions: torch.Tensor,
    cell: torch.Tensor,
    seed: int = 0,
    atol: float = 1e-10,
    rotation: Optional[Any] = None,
) -> None:
    """Energy invariant, forces F → F·Q and virial W → Qᵀ W Q when positions and cell rotate by Q
    (row vectors: r → r·Q). ``outputs_fn(positions, cell) -> {"energy", "forces", "virial"}``.
    Q: ``rotation`` (3, 3) when given, else :func:`random_rotation` (``seed``)."""
    positions = torch.as_tensor(positions, dtype=torch.float64)
    cell = torch.as_tensor(cell, dtype=torch.float64)
    q = random_rotation(seed) if rotation is None else torch.as_tensor(np.asarray(rotation), dtype=torch.float64)
    a = outputs_fn(positions, cell)
    b = outputs_fn(positions @ q, cell @ q)
    checks = [("energy", a["energy"], b["energy"])]
    if "forces" in a:
        checks.append(("forces", a["forces"] @ q, b["forces"]))
    if "virial" in a:
        checks.append(("virial", q.T @ a["virial"].reshape(3, 3) @ q, b["virial"].reshape(3, 3)))
    for name, want, got in checks:
        err = float((torch.as_tensor(want) - torch.as_tensor(got)).abs().max())
        if not err <= atol:
            raise AssertionError(f"rotation: {name} differs by {err:.3e} (> {atol:.1e})")


# ------------------------------------------------------------------------------------ mlpot models
def _stats_deepmd(model: Any, seed: int) -> None:
    """DeePMD-like: the angular columns zero-mean with one shared std (rotation covariance holds), the
    radial column its own mean and std; energy bias linspace(−3, −1) eV over the types."""
    nt = len(model.type_map)
    k = model.descriptor.davg.shape[-1]
    gen = torch.Generator().manual_seed(seed)
    avg = torch.zeros(nt, k, dtype=torch.float64)
    avg[:, 0] = 0.2 * torch.rand(nt, generator=gen, dtype=torch.float64)
    std = (0.3 + torch.rand(nt, 1, generator=gen, dtype=torch.float64)).repeat(1, k)
    std[:, 0] = 0.4 + torch.rand(nt, generator=gen, dtype=torch.float64)
    model.descriptor.set_stats(avg, std)
    with torch.no_grad():
        model.fitting.energy_bias.copy_(torch.linspace(-3.0, -1.0, nt, dtype=model.fitting.energy_bias.dtype))


def _stats_uniform(model: Any, seed: int) -> None:
    """Every column its own mean 0.3·U(0, 1) and std 0.5 + U(0, 1) (not rotation covariant); bias untouched."""
    nt, k = len(model.type_map), model.descriptor.davg.shape[-1]
    gen = torch.Generator().manual_seed(seed)
    davg = 0.3 * torch.rand(nt, k, generator=gen, dtype=torch.float64)
    dstd = 0.5 + torch.rand(nt, k, generator=gen, dtype=torch.float64)
    model.descriptor.set_stats(davg, dstd)


def _stats_gaussian(model: Any, seed: int) -> None:
    """Mean 0.1·N(0, 1), std 0.5 + U(0, 1) per entry, from a generator seeded with ``seed``; bias untouched."""
    d = model.descriptor
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        d.davg.copy_(0.1 * torch.randn(d.davg.shape, generator=g, dtype=torch.float64))
        d.dstd.copy_(0.5 + torch.rand(d.dstd.shape, generator=g, dtype=torch.float64))


def _stats_gaussian_global(model: Any, seed: int) -> None:
    """Mean N(0, 0.1²), std U(0.5, 1.5) per entry from torch's global generator (seed it with
    ``torch_seed``; ``seed`` is unused); bias untouched."""
    with torch.no_grad():
        model.descriptor.davg.normal_(0.0, 0.1)
        model.descriptor.dstd.uniform_(0.5, 1.5)


#: descriptor statistics recipes of :func:`tiny_model` (name -> fn(model, stats_seed))
STATS_RECIPES: dict[str, Callable[[Any, int], None]] = {
    "deepmd": _stats_deepmd,
    "uniform": _stats_uniform,
    "gaussian": _stats_gaussian,
    "gaussian_global": _stats_gaussian_global,
}


def tiny_model_config(
    kind: str = "se_e2_a",
    type_map: Sequence[str] = ("O", "H"),
    sel: Sequence[int] = (24, 48),
    rcut: float = 4.0,
    rcut_smth: float = 1.0,
    precision: str = "float64",
    seed: int = 7,
    neuron: Sequence[int] = (4, 8, 16),
    fitting: Sequence[int] = (16, 16),
    axis_neuron: int = 4,
    fitting_seed: Optional[int] = None,
    **descriptor: Any,
) -> dict:
    """The model section (DeePMD-kit layout) that :func:`tiny_model` builds: descriptor ``kind`` with
    rcut/rcut_smth (Å), sel, neuron, resnet_dt True, tanh, ``precision``, ``seed`` (extra keyword
    arguments override or add descriptor keys, e.g. ``type_one_side=True``, ``resnet_dt=False``);
    fitting net ``fitting`` with resnet_dt True, tanh and seed ``fitting_seed`` (default ``seed + 1``)."""
    desc = {"type": kind, "rcut": rcut, "rcut_smth": rcut_smth, "sel": list(sel), "neuron": list(neuron),
            "resnet_dt": True, "activation_function": "tanh", "precision": precision, "seed": seed, **descriptor}
    if kind in ("se_e2_a", "se_a") and "axis_neuron" not in descriptor:
        desc["axis_neuron"] = axis_neuron
    fit_seed = seed + 1 if fitting_seed is None else fitting_seed
    return {"type_map": list(type_map), "descriptor": desc,
            "fitting_net": {"neuron": list(fitting), "resnet_dt": True, "activation_function": "tanh",
                            "precision": precision, "seed": fit_seed}}


def tiny_model(
    kind: str = "se_e2_a",
    type_map: Sequence[str] = ("O", "H"),
    sel: Sequence[int] = (24, 48),
    rcut: float = 4.0,
    rcut_smth: float = 1.0,
    precision: str = "float64",
    seed: int = 7,
    neuron: Sequence[int] = (4, 8, 16),
    fitting: Sequence[int] = (16, 16),
    axis_neuron: int = 4,
    device: str = "cpu",
    *,
    fitting_seed: Optional[int] = None,
    stats: Any = "deepmd",
    stats_seed: int = 11,
    energy_bias: Optional[Sequence[float]] = None,
    torch_seed: Optional[int] = None,
    **descriptor: Any,
) -> Any:
    """A small random :class:`~mlpot.model.EnergyModel` (config: :func:`tiny_model_config`), built
    through the public config path (``EnergyModel.from_config``), in eval mode.

    ``stats``: the descriptor statistics: a name of :data:`STATS_RECIPES` (default ``"deepmd"``: angular
    columns zero-mean with one shared std, so rotation covariance holds, and a per-type energy bias
    linspace(−3, −1) eV), seeded with ``stats_seed``; a sequence of labelled systems
    (:meth:`EnergyModel.compute_stats` on them: statistics and energy bias from data); or None (the
    constructor's: zero mean, unit std, zero bias). ``energy_bias`` (eV per type), when given, is set
    last. ``torch_seed``: ``torch.manual_seed(torch_seed)`` first (for recipes drawing from torch's
    global generator). ``kind`` is any registered descriptor name; extra keyword arguments go into the
    descriptor section (``axis_neuron`` only for se_e2_a-like descriptors)."""
    from mlpot.model import EnergyModel

    if torch_seed is not None:
        torch.manual_seed(torch_seed)
    cfg = tiny_model_config(kind, type_map, sel, rcut, rcut_smth, precision, seed, neuron, fitting, axis_neuron,
                            fitting_seed, **descriptor)
    model = EnergyModel.from_config(cfg, device=device)
    if isinstance(stats, str):
        if stats not in STATS_RECIPES:
            raise ValueError(f"tiny_model: unknown stats {stats!r}; expected one of {sorted(STATS_RECIPES)}, "
                             "a sequence of systems or None")
        STATS_RECIPES[stats](model, stats_seed)
    elif stats is not None:
        model.compute_stats(list(stats))
    if energy_bias is not None:
        with torch.no_grad():
            model.fitting.energy_bias.copy_(torch.tensor(list(energy_bias), dtype=model.fitting.energy_bias.dtype))
    model.eval()
    return model


# ------------------------------------------------------------------------------------ structures
def argon_atoms(
    repeat: Any = 2,
    a: float = 5.8,
    jitter: float = 0.0,
    seed: int = 0,
    stretch: Optional[Sequence[float]] = None,
    shear: bool = False,
) -> Any:
    """fcc argon as ASE ``Atoms``: the conventional cubic cell (lattice constant ``a``, Å) repeated
    ``repeat`` times (an int: along all three axes); when ``stretch`` or ``shear`` is given, the cell
    rows scaled by ``stretch`` and/or sheared into a triclinic cell (b += 0.25 a, c += 0.15 a − 0.1 b)
    with the atoms following; then Gaussian displacements of std ``jitter`` (Å) from
    ``numpy.random.default_rng(seed)``. The LJ systems of the MD tests."""
    from ase.build import bulk

    reps = (repeat,) * 3 if isinstance(repeat, int) else tuple(repeat)
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat(reps)
    if stretch is not None or shear:
        cell = atoms.cell.array * np.array(stretch if stretch is not None else (1.0, 1.0, 1.0))[:, None]
        if shear:
            cell[1] += 0.25 * cell[0]
            cell[2] += 0.15 * cell[0] - 0.1 * cell[1]
        atoms.set_cell(cell, scale_atoms=True)
    if jitter:
        atoms.positions += np.random.default_rng(seed).normal(0.0, jitter, atoms.positions.shape)
    return atoms


def model_outputs(
    model: Any, atom_types: Any, pbc: Sequence[bool], nl: Optional[Any] = None
) -> Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """``(positions, cell) -> {"energy" (0-d), "forces" (N, 3), "virial" (3, 3)}`` of one frame of
    ``model`` (float64 outputs). ``nl``: a fixed pair list (e.g. with a skin, for finite differences)."""
    from mlpot.model import evaluate

    def fn(positions: torch.Tensor, cell: torch.Tensor) -> dict[str, torch.Tensor]:
        out = evaluate(model, positions, atom_types, cell, list(pbc), nl=nl)
        return {"energy": out["energy"].detach().sum().double(), "forces": out["forces"].detach().double(),
                "virial": out["virial"][0].detach().double()}

    return fn


def model_energy_fn(model: Any, atom_types: Any, pbc: Sequence[bool], nl: Optional[Any] = None) -> EnergyFn:
    """``(positions, cell) -> energy`` (eV, float) of one frame of ``model``, without derivatives."""
    from mlpot.model import evaluate

    def fn(positions: torch.Tensor, cell: torch.Tensor) -> float:
        with torch.no_grad():
            out = evaluate(model, positions, atom_types, cell, list(pbc), nl=nl, outputs=("energy",))
        return float(out["energy"].sum())

    return fn


def check_batch_independence(
    model: Any,
    frames: Sequence[tuple[Any, Any, Any, Sequence[bool]]],
    atol: float = 1e-10,
    rtol: float = 0.0,
    tolerances: Optional[dict[str, tuple[float, float]]] = None,
    evaluate_fn: Optional[Callable[..., dict[str, torch.Tensor]]] = None,
) -> None:
    """Frames ``(positions, types, cell, pbc)`` evaluated as one batch give the energies, forces and
    virials of each frame evaluated alone: |batched − alone| <= atol + rtol·|alone| elementwise
    (``tolerances``: (rtol, atol) per output name, overriding those). ``evaluate_fn``: the function
    under test, with the signature of :func:`mlpot.model.evaluate` (its default)."""
    if evaluate_fn is None:
        from mlpot.model import evaluate as evaluate_fn
    tol = {name: (rtol, atol) for name in ("energy", "forces", "virial")}
    tol.update(tolerances or {})
    alone = [evaluate_fn(model, p, t, c, list(b)) for p, t, c, b in frames]
    pos = torch.cat([torch.as_tensor(np.asarray(p), dtype=torch.float64) for p, _, _, _ in frames])
    types = torch.cat([torch.as_tensor(np.asarray(t)) for _, t, _, _ in frames])
    cells = torch.stack([torch.as_tensor(np.asarray(c), dtype=torch.float64).reshape(3, 3) for _, _, c, _ in frames])
    pbc = torch.tensor([list(b) for _, _, _, b in frames])
    fidx = torch.cat([torch.full((len(p),), k, dtype=torch.long) for k, (p, _, _, _) in enumerate(frames)])
    both = evaluate_fn(model, pos, types, cells, pbc, frame_index=fidx)
    start = 0
    for k, out in enumerate(alone):
        n = out["forces"].shape[0]
        for name, want, got in (("energy", out["energy"][0], both["energy"][k]),
                                ("forces", out["forces"], both["forces"][start:start + n]),
                                ("virial", out["virial"][0], both["virial"][k])):
            r, a = tol[name]
            want, got = want.detach(), got.detach()
            excess = float(((want - got).abs() - (a + r * want.abs())).max())
            if not excess <= 0.0:
                err = float((want - got).abs().max())
                raise AssertionError(f"batch independence: frame {k} {name} differs by {err:.3e} "
                                     f"(> atol {a:.1e} + rtol {r:.1e}·|value|)")
        start += n


__all__ = [
    "fd_derivative",
    "check_forces_fd",
    "check_virial_fd",
    "check_rotation",
    "check_batch_independence",
    "random_rotation",
    "tiny_model",
    "tiny_model_config",
    "STATS_RECIPES",
    "fd_forces",
    "fd_virial",
    "atoms_energy_fn",
    "VOIGT",
    "argon_atoms",
    "model_outputs",
    "model_energy_fn",
]
