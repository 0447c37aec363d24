"""DFT data: the in-memory frames, readers/writers, the HDF5 store, statistics."""

from mlpot.data.frames import LabeledFrames

__all__ = ["LabeledFrames"]
