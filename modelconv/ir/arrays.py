"""Array helpers shared by the passes and writers."""

from __future__ import annotations

import sys
import warnings

import numpy as np

#: numpy dtypes torch's copy kernel takes (``torch.from_numpy``)
_TORCH_DTYPES = frozenset(np.dtype(t) for t in (
    np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
    np.bool_, np.complex64, np.complex128))


def contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` in C order: the array itself when it already is, else a copy.

    A transposed weight copied by numpy walks the source with a large stride; torch's copy
    kernel is blocked and multi-threaded (about 2-3x faster on a 2-core machine), so it is
    used when torch is already imported (a torch conversion) and takes the dtype.

    Args:
        array: any strided array.

    Returns:
        A C-contiguous array with the same values.
    """
    if array.flags.c_contiguous:
        return array
    torch = sys.modules.get("torch")
    if torch is not None and array.dtype in _TORCH_DTYPES and array.size \
            and all(s >= 0 for s in array.strides):
        with warnings.catch_warnings():  # a read-only mapped array: torch only reads it
            warnings.simplefilter("ignore", UserWarning)
            out: np.ndarray = torch.from_numpy(array).contiguous().numpy()
        return out
    return np.ascontiguousarray(array)
