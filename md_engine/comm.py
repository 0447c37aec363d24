"""Communicators for md_engine: the MPI implementation of :class:`md_engine.state.Comm` and the
point-to-point operations the domain layer (:mod:`md_engine.domain`) needs.

* :class:`MPIComm` wraps an ``mpi4py`` communicator (``MPI.COMM_WORLD`` by default). Reductions take
  torch tensors (any device; staged through host memory) and return tensors of the same dtype/device.
* :class:`SelfExchange` is the one-rank version of the point-to-point layer (every send goes to
  oneself), used with :class:`md_engine.state.SerialComm`.
* :func:`mpi_launched`, :func:`world_comm`, :func:`local_rank`: launch detection (``mpirun``/``srun``)
  without importing mpi4py in serial runs.

mpi4py is imported only when an :class:`MPIComm` is created.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
import torch

from md_engine.state import SERIAL, Comm, SerialComm

# environment variables set by MPI launchers (MPICH/Hydra, Open MPI, Intel MPI, SLURM srun with PMI/PMIx)
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE")
_LOCAL_RANK_VARS = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


def mpi_launched() -> bool:
    """True when this process was started by an MPI launcher with more than one rank, or with
    ``PMI_RANK``/``OMPI_COMM_WORLD_RANK`` set (a one-rank mpirun), judged from environment variables."""
    for var in _SIZE_VARS:
        v = os.environ.get(var)
        if v is not None and v.isdigit() and int(v) > 1:
            return True
    return any(v in os.environ for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"))


def world_comm(use_mpi: Optional[bool] = None) -> Comm:
    """:class:`MPIComm` of ``MPI.COMM_WORLD`` when launched under MPI (or ``use_mpi=True``), else the
    serial communicator."""
    if use_mpi is None:
        use_mpi = mpi_launched()
    return MPIComm() if use_mpi else SERIAL


def local_rank(comm: Optional[Comm] = None) -> int:
    """This rank's index among the ranks on its node (for ``cuda:<local_rank>``)."""
    for var in _LOCAL_RANK_VARS:
        v = os.environ.get(var)
        if v is not None and v.isdigit():
            return int(v)
    if isinstance(comm, MPIComm):
        from mpi4py import MPI

        node = comm.mpi.Split_type(MPI.COMM_TYPE_SHARED)
        r = node.Get_rank()
        node.Free()
        return r
    return 0


def rank_device(comm: Comm, device: Optional[str] = None) -> str:
    """The device of this rank: ``device`` if given explicitly with an index or as "cpu"; otherwise
    ``cuda:<local_rank>`` (modulo the visible GPUs) when CUDA is available, else "cpu"."""
    if device not in (None, "auto", "cuda"):
        return str(device)
    if not torch.cuda.is_available():
        return "cpu"
    if comm.size == 1:
        return "cuda"
    return f"cuda:{local_rank(comm) % max(torch.cuda.device_count(), 1)}"


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy())


class MPIComm:
    """:class:`md_engine.state.Comm` over an mpi4py communicator, plus point-to-point helpers."""

    def __init__(self, mpi_comm: Any = None) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.mpi = mpi_comm if mpi_comm is not None else MPI.COMM_WORLD
        self.rank = int(self.mpi.Get_rank())
        self.size = int(self.mpi.Get_size())

    # --- Comm protocol
    def _allreduce(self, x: torch.Tensor, op: Any) -> torch.Tensor:
        a = _np(x)
        out = np.empty_like(a)
        self.mpi.Allreduce(a, out, op=op)
        return torch.from_numpy(out).to(device=x.device)

    def allreduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        return self._allreduce(x, self.MPI.SUM)

    def allreduce_max(self, x: torch.Tensor) -> torch.Tensor:
        return self._allreduce(x, self.MPI.MAX)

    def broadcast(self, x: torch.Tensor, root: int = 0) -> torch.Tensor:
        a = _np(x).copy()
        self.mpi.Bcast(a, root=root)
        return torch.from_numpy(a).to(device=x.device)

    # --- objects and point-to-point (used by the domain layer)
    def barrier(self) -> None:
        self.mpi.Barrier()

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return self.mpi.bcast(obj, root=root)

    def gather_obj(self, obj: Any, root: int = 0) -> Optional[list]:
        return self.mpi.gather(obj, root=root)

    def alltoall_obj(self, objs: Sequence[Any]) -> list:
        return self.mpi.alltoall(list(objs))

    def sendrecv_obj(self, obj: Any, dest: int, source: int) -> Any:
        return self.mpi.sendrecv(obj, dest=dest, source=source)

    def sendrecv_into(self, send: np.ndarray, recv: np.ndarray, dest: int, source: int) -> None:
        """Send the contiguous array ``send`` to ``dest`` while receiving ``recv`` (pre-sized) from ``source``."""
        self.mpi.Sendrecv(send, dest=dest, recvbuf=recv, source=source)

    def cart_neighbors(self, dims: Sequence[int], periods: Sequence[bool]) -> tuple[list[int], list[tuple[int, int]]]:
        """This rank's coordinates in a Cartesian grid (``MPI.Comm.Create_cart``, no reordering, so
        grid rank = communicator rank, row-major) and per dimension its (lower, upper) neighbor."""
        cart = self.mpi.Create_cart(list(dims), periods=list(periods), reorder=False)
        coords = list(cart.Get_coords(self.rank))
        nbs = [tuple(cart.Shift(k, 1)) for k in range(3)]
        cart.Free()
        return coords, [(int(a), int(b)) for a, b in nbs]

    def abort(self, code: int = 1) -> None:
        self.mpi.Abort(code)


class SelfExchange(SerialComm):
    """The point-to-point layer of one rank: messages go to oneself (periodic self-images); the
    reductions are the serial identities of :class:`SerialComm`."""

    def __init__(self, comm: Comm = SERIAL) -> None:
        self.comm = comm

    def barrier(self) -> None:
        pass

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return obj

    def gather_obj(self, obj: Any, root: int = 0) -> Optional[list]:
        return [obj]

    def alltoall_obj(self, objs: Sequence[Any]) -> list:
        return list(objs)

    def sendrecv_obj(self, obj: Any, dest: int, source: int) -> Any:
        return obj

    def sendrecv_into(self, send: np.ndarray, recv: np.ndarray, dest: int, source: int) -> None:
        recv[...] = send

    def cart_neighbors(self, dims: Sequence[int], periods: Sequence[bool]) -> tuple[list[int], list[tuple[int, int]]]:
        return [0, 0, 0], [(0, 0)] * 3

    def abort(self, code: int = 1) -> None:
        raise SystemExit(code)


def p2p(comm: Comm) -> Any:
    """The point-to-point layer for ``comm``: itself for :class:`MPIComm`, :class:`SelfExchange` serially."""
    if isinstance(comm, MPIComm):
        return comm
    if comm.size != 1:
        raise TypeError(f"communicator {type(comm).__name__} of size {comm.size} has no point-to-point layer")
    return SelfExchange(comm)


__all__ = ["MPIComm", "SelfExchange", "p2p", "mpi_launched", "world_comm", "local_rank", "rank_device"]
