"""Test helpers shipped with the package (as ASE ships ``ase.calculators.test``).

A new descriptor, fitting or MD potential gets the same independent checks as the built-in ones:

* :func:`check_forces_fd`: forces against a fourth-order central finite difference of the energy;
* :func:`check_virial_fd`: the virial (eV, DeePMD convention W = −stress·V) against the derivative of
  the energy under a homogeneous strain of positions and cell;
* :func:`check_rotation`: energy invariant, forces and virial covariant under a rotation;
* :func:`check_batch_independence`: frames evaluated together equal frames evaluated alone;
* :func:`tiny_model`: a small random model with DeePMD-like statistics, built through the public
  config path (``EnergyModel.from_config``), for fast tests.

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


def fd_derivative(fun: Callable[[float], float], h: float = 1e-3) -> float:
    """Fourth-order central difference of a scalar function of a step t, at t = 0 (error O(h⁴))."""
    return (8.0 * (fun(h) - fun(-h)) - (fun(2 * h) - fun(-2 * h))) / (12.0 * h)


def check_forces_fd(
    energy_fn: EnergyFn,
    forces: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    components: Sequence[tuple[int, int]],
    h: float = 1e-3,
    rtol: float = 1e-6,
) -> None:
    """``forces[a, k]`` (eV/Å) equals −∂E/∂r_ak by finite differences for each (atom a, axis k).

    The tolerance is relative to max(|F_fd|, max|F|), so components near zero are judged on the
    scale of the whole force field."""
    positions = torch.as_tensor(positions, dtype=torch.float64)
    scale = float(torch.as_tensor(forces).abs().max())
    for a, k in components:

        def e_of(t: float) -> float:
            p = positions.clone()
            p[a, k] += t
            return energy_fn(p, cell)

        f_fd = -fd_derivative(e_of, h)
        f = float(forces[a, k])
        if not abs(f_fd - f) < rtol * max(abs(f_fd), scale):
            raise AssertionError(f"force[{a}, {k}] = {f!r} eV/Å but −dE/dr by finite differences = {f_fd!r}")


def check_virial_fd(
    energy_fn: EnergyFn,
    virial: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    components: Sequence[tuple[int, int]] = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (2, 0)),
    h: float = 1e-3,
    rtol: float = 1e-6,
) -> None:
    """``virial[a, b]`` (eV) equals −∂E/∂ε_ab under the strain r → r(1 + ε), cell → cell(1 + ε)."""
    positions = torch.as_tensor(positions, dtype=torch.float64)
    cell = torch.as_tensor(cell, dtype=torch.float64)
    scale = float(torch.as_tensor(virial).abs().max())
    for a, b in components:

        def e_of(t: float) -> float:
            m = torch.eye(3, dtype=torch.float64)
            m[a, b] += t
            return energy_fn(positions @ m, cell @ m)

        w_fd = -fd_derivative(e_of, h)
        w = float(virial[a, b])
        if not abs(w_fd - w) < rtol * max(abs(w_fd), scale):
            raise AssertionError(f"virial[{a}, {b}] = {w!r} eV but −dE/dε by finite differences = {w_fd!r}")


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
) -> None:
    """Energy invariant, forces F → F·Q and virial W → Qᵀ W Q when positions and cell rotate by Q
    (row vectors: r → r·Q). ``outputs_fn(positions, cell) -> {"energy", "forces", "virial"}``."""
    positions = torch.as_tensor(positions, dtype=torch.float64)
    cell = torch.as_tensor(cell, dtype=torch.float64)
    q = random_rotation(seed)
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
    **descriptor: Any,
) -> Any:
    """A small random :class:`~mlpot.model.EnergyModel` with DeePMD-like statistics (angular columns
    zero-mean with one shared std, so rotation covariance holds) and a per-type energy bias.

    ``kind`` is any registered descriptor name; extra keyword arguments go into the descriptor section
    (``axis_neuron`` only for se_e2_a-like descriptors)."""
    from mlpot.model import EnergyModel

    desc = {"type": kind, "rcut": rcut, "rcut_smth": rcut_smth, "sel": list(sel), "neuron": list(neuron),
            "resnet_dt": True, "activation_function": "tanh", "precision": precision, "seed": seed, **descriptor}
    if kind in ("se_e2_a", "se_a") and "axis_neuron" not in descriptor:
        desc["axis_neuron"] = axis_neuron
    cfg = {"type_map": list(type_map), "descriptor": desc,
           "fitting_net": {"neuron": list(fitting), "resnet_dt": True, "precision": precision, "seed": seed + 1}}
    model = EnergyModel.from_config(cfg, device=device)
    nt = len(model.type_map)
    davg, dstd = model.descriptor.davg, model.descriptor.dstd
    k = davg.shape[-1]
    gen = torch.Generator().manual_seed(11)
    avg = torch.zeros(nt, k, dtype=torch.float64)
    avg[:, 0] = 0.2 * torch.rand(nt, generator=gen, dtype=torch.float64)
    std = (0.3 + torch.rand(nt, 1, generator=gen, dtype=torch.float64)).repeat(1, k)
    std[:, 0] = 0.4 + torch.rand(nt, generator=gen, dtype=torch.float64)
    model.descriptor.set_stats(avg, std)
    with torch.no_grad():
        model.fitting.energy_bias.copy_(torch.linspace(-3.0, -1.0, nt, dtype=model.fitting.energy_bias.dtype))
    return model


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


def check_batch_independence(model: Any, frames: Sequence[tuple[Any, Any, Any, Sequence[bool]]], atol: float = 1e-10) -> None:
    """Frames ``(positions, types, cell, pbc)`` evaluated as one batch give the energies, forces and
    virials of each frame evaluated alone."""
    from mlpot.model import evaluate

    alone = [evaluate(model, p, t, c, list(b)) for p, t, c, b in frames]
    pos = torch.cat([torch.as_tensor(np.asarray(p), dtype=torch.float64) for p, _, _, _ in frames])
    types = torch.cat([torch.as_tensor(np.asarray(t)) for _, t, _, _ in frames])
    cells = torch.stack([torch.as_tensor(np.asarray(c), dtype=torch.float64).reshape(3, 3) for _, _, c, _ in frames])
    pbc = torch.tensor([list(b) for _, _, _, b in frames])
    fidx = torch.cat([torch.full((len(p),), k, dtype=torch.long) for k, (p, _, _, _) in enumerate(frames)])
    both = evaluate(model, pos, types, cells, pbc, frame_index=fidx)
    start = 0
    for k, out in enumerate(alone):
        n = out["forces"].shape[0]
        for name, want, got in (("energy", out["energy"][0], both["energy"][k]),
                                ("forces", out["forces"], both["forces"][start:start + n]),
                                ("virial", out["virial"][0], both["virial"][k])):
            err = float((want - got).abs().max())
            if not err <= atol:
                raise AssertionError(f"batch independence: frame {k} {name} differs by {err:.3e} (> {atol:.1e})")
        start += n


__all__ = [
    "fd_derivative",
    "check_forces_fd",
    "check_virial_fd",
    "check_rotation",
    "check_batch_independence",
    "random_rotation",
    "tiny_model",
    "model_outputs",
    "model_energy_fn",
]
