"""Communicators: the :class:`Comm` protocol (everything the engine calls: reductions, object
collectives, point-to-point exchange, barrier, abort), the one-rank :class:`SerialComm` and the MPI
:class:`MPIComm`.

* :class:`SerialComm`: every reduction is the identity and every message goes to oneself (periodic
  self-images of the domain layer, :mod:`md_engine.domain`).
* :class:`MPIComm` wraps an ``mpi4py`` communicator (``MPI.COMM_WORLD`` by default). Reductions take
  torch tensors (any device; staged through host memory) and return tensors of the same dtype/device.
* :func:`mpi_launched`, :func:`world_comm`, :func:`local_rank`: launch detection (``mpirun``/``srun``)
  without importing mpi4py in serial runs.

mpi4py is imported only when an :class:`MPIComm` is created.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Protocol, Sequence

import numpy as np
import torch



class Comm(Protocol):
    """What md_engine needs from a communicator (implemented by :class:`SerialComm` and :class:`MPIComm`)."""

    rank: int
    size: int

    def allreduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``x`` over all ranks (a tensor of the same shape, dtype and device)."""
        ...

    def allreduce_max(self, x: torch.Tensor) -> torch.Tensor:
        """Element-wise maximum of ``x`` over all ranks."""
        ...

    def broadcast(self, x: torch.Tensor, root: int = 0) -> torch.Tensor:
        """``x`` of rank ``root`` on every rank."""
        ...

    def barrier(self) -> None:
        """Wait for all ranks."""
        ...

    def abort(self, code: int = 1) -> None:
        """Stop all ranks now (after an error on one rank that the others cannot know about)."""
        ...

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        """A picklable object of rank ``root`` on every rank."""
        ...

    def gather_obj(self, obj: Any, root: int = 0) -> Optional[list]:
        """The objects of all ranks as a list on ``root`` (None elsewhere)."""
        ...

    def alltoall_obj(self, objs: Sequence[Any]) -> list:
        """Object ``objs[r]`` to rank ``r``; returns the objects received, by source rank."""
        ...

    def sendrecv_obj(self, obj: Any, dest: int, source: int) -> Any:
        """Send ``obj`` to ``dest`` while receiving one from ``source``."""
        ...

    def sendrecv_into(self, send: np.ndarray, recv: np.ndarray, dest: int, source: int) -> None:
        """Send the contiguous array ``send`` to ``dest`` while receiving ``recv`` (pre-sized) from ``source``."""
        ...

    def cart_neighbors(self, dims: Sequence[int], periods: Sequence[bool]) -> tuple[list[int], list[tuple[int, int]]]:
        """This rank's coordinates in a Cartesian grid and per dimension its (lower, upper) neighbor."""
        ...


class SerialComm:
    """The one-rank communicator: reductions are identities, messages go to oneself."""

    rank = 0
    size = 1

    def allreduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def allreduce_max(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def broadcast(self, x: torch.Tensor, root: int = 0) -> torch.Tensor:
        return x

    def barrier(self) -> None:
        pass

    def abort(self, code: int = 1) -> None:
        raise SystemExit(code)

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


SERIAL = SerialComm()


def as_comm(comm: Optional[Comm]) -> Comm:
    """``comm``, or the serial communicator for None."""
    return SERIAL if comm is None else comm


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


def rank_device(comm: Comm, device: Optional[str] = None) -> torch.device:
    """The device of this rank (:func:`mlpot.device.resolve_device`): ``device`` as given, or for None,
    "auto" and "cuda" under MPI ``cuda:<local_rank>`` (modulo the visible GPUs) when CUDA is available."""
    from mlpot.device import resolve_device

    return resolve_device(device, local_rank(comm) if comm.size > 1 else None)


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy())


class MPIComm:
    """:class:`Comm` over an mpi4py communicator."""

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


__all__ = ["Comm", "SerialComm", "SERIAL", "MPIComm", "as_comm", "mpi_launched", "world_comm", "local_rank", "rank_device"]
