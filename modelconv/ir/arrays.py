"""Array helpers shared by the passes and writers."""

from __future__ import annotations

import hashlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx_ir as ir

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
    if array.ndim == 2 and 0 < array.strides[0] < array.strides[1] and array.shape[1] > _TILE:
        return _transposed_copy(array)
    return np.ascontiguousarray(array)


#: columns copied at a time from a transposed matrix
_TILE = 64


def _transposed_copy(array: np.ndarray) -> np.ndarray:
    """A transposed matrix (column-major in memory) copied to C order in column tiles.

    Each tile reads ``_TILE`` source rows side by side, so the cache lines one output row
    brings in are still there for the next; about 3x faster than numpy's element walk.
    """
    out = np.empty(array.shape, array.dtype)
    for start in range(0, array.shape[1], _TILE):
        out[:, start:start + _TILE] = array[:, start:start + _TILE]
    return out


#: how much of a strided tensor is copied at a time when it is written
_BLOCK_BYTES = 16 * 2**20


class StridedTensor(ir.Tensor):
    """An ``ir.Tensor`` over a strided view (a transposed weight of a mapped file), written
    in C order block by block.

    numpy writes a non-contiguous array element by element (about 20x slower than a
    blocked copy) and ``tobytes`` copies it whole; this writes it in chunks of about
    ``_BLOCK_BYTES`` (contiguous copies of leading-axis slices), so one chunk is in flight.
    """

    def tofile(self, file: Any) -> None:
        """Write the C-ordered bytes to ``file``.

        Args:
            file: a binary file object.
        """
        for block in c_order_blocks(self.numpy()):
            file.write(block)


def c_order_blocks(array: Any) -> Iterator[memoryview]:
    """The bytes of ``array`` in C order, in blocks of about 16 MiB.

    A C-contiguous array gives one view of its own memory; a strided view (a transposed
    weight) is copied a few leading-axis rows at a time, so one block is in flight.

    Args:
        array: any array, or an array-like computed when read (a lazy cast).

    Yields:
        Byte views, in order.
    """
    array = np.asarray(array)
    if array.flags.c_contiguous or array.ndim == 0:
        yield np.ascontiguousarray(array).reshape(-1).view(np.uint8).data
        return
    row = max(array[0].nbytes, 1)
    step = max(1, _BLOCK_BYTES // row)
    for start in range(0, array.shape[0], step):
        yield contiguous(array[start:start + step]).reshape(-1).view(np.uint8).data


def digest(array: np.ndarray) -> bytes:
    """SHA-256 of ``array``'s C-ordered bytes, read block by block (no copy of a view).

    Args:
        array: any array.

    Returns:
        The 32-byte digest.
    """
    h = hashlib.sha256()
    for block in c_order_blocks(array):
        h.update(block)
    return h.digest()


def view_key(array: np.ndarray) -> bytes | None:
    """An identity key for a strided view (a transposed weight of a mapped file): the same
    memory seen with the same strides holds the same values, so views are told apart
    without reading them. None for a C-contiguous array (hash its bytes instead).

    Args:
        array: any array.

    Returns:
        The key, or None.
    """
    if array.flags.c_contiguous or array.ndim == 0:
        return None
    address = array.__array_interface__["data"][0]
    return f"view:{address}:{array.strides}".encode()
