"""md_engine: molecular dynamics for mlpot potentials, state and loop on the device (GPU or CPU),
MPI spatial decomposition across ranks. Units: eV, Å, fs, amu, K, bar."""

__version__ = "0.1.0"
