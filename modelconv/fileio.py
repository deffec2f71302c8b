"""Atomic output: write into a temporary folder beside the target, then rename.

A failed conversion leaves nothing behind; companion files (``.onnx.data``) are moved
before the main file so a reader never sees a model whose data is missing.

Input files: :class:`FileView` hands out read-only array views of a mapped file, so an
importer's weights stay in the page cache instead of being copied into memory.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import ExportError, ModelLoadError, OutputExistsError
from modelconv.hooks import pause_point


def check_output_path(dst: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Validate the output path before any work is done."""
    path = Path(dst)
    if not path.name or path.is_dir():
        raise ExportError("output path is a folder, not a file", path=str(path),
                          hint="Give a file name such as model.onnx")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"output folder '{parent}' does not exist", path=str(path),
                          hint="Create the folder first")
    if path.exists() and not overwrite:
        raise OutputExistsError("output file already exists", path=str(path),
                                hint="Pass --overwrite (overwrite=True) to replace it")
    return path


@contextlib.contextmanager
def atomic_output_dir(dst: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp folder in ``dst``'s folder; on success move its files next to ``dst``.

    Files are moved in sorted order except that ``dst``'s own name is moved last.
    """
    target = Path(dst)
    parent = target.parent if str(target.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=".modelconv-", dir=parent))
    try:
        pause_point("export")
        yield tmp
        produced = sorted(p.name for p in tmp.iterdir())
        if target.name in produced:
            produced.remove(target.name)
            produced.append(target.name)
        for name in produced:
            os.replace(tmp / name, parent / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(dst: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dst`` atomically."""
    with atomic_output_dir(dst) as tmp:
        (tmp / Path(dst).name).write_bytes(data)
    return Path(dst)


#: files at least this large are mapped rather than read (:func:`read_or_map`)
MAP_FROM_BYTES = 2**30


def read_or_map(path: Path) -> bytes | mmap.mmap:
    """The bytes of ``path``; a read-only memory map when it is large (nothing copied).

    Args:
        path: the file.

    Returns:
        ``bytes``, or an ``mmap`` (a buffer that flatbuffers' readers accept) from
        ``MAP_FROM_BYTES`` on.

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    if path.stat().st_size < MAP_FROM_BYTES:
        return path.read_bytes()
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


class FileView:
    """Zero-copy, read-only array views of a file's bytes (weights streamed from the source).

    The file is memory-mapped once, on the first request: the arrays handed out are views
    of page-cache pages (file-backed memory the kernel can drop and read again), never
    copies. Each view keeps the mapping alive; nothing needs closing.

    Args:
        path: the file.
        start: where the viewed region starts (a member stored in a zip archive).
        size: the region's size (default: to the end of the file).
        display: how the source is named in errors.
        file: the file already opened (and checked) by the caller; it is mapped rather
            than opening ``path`` again.
    """

    def __init__(self, path: str | os.PathLike[str], start: int = 0, size: int | None = None,
                 display: str | None = None, file: Any = None) -> None:
        self.path = Path(path)
        self.start = start
        self.size = size
        self.display = display or str(path)
        self._file = file  # an already opened (and checked) file: mapped instead of the path
        self._map: mmap.mmap | None = None

    def _mapping(self) -> mmap.mmap:
        if self._map is None:
            if self._file is not None:
                self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            else:
                with open(self.path, "rb") as fh:
                    self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            if self.size is None:
                self.size = len(self._map) - self.start
        return self._map

    def array(self, offset: int, dtype: np.dtype[Any], shape: tuple[int, ...],
              what: str) -> np.ndarray:
        """The bytes at ``offset`` (in the region) as a read-only array.

        Args:
            offset: byte offset inside the region.
            dtype: element type (any byte order).
            shape: array shape.
            what: the tensor, for errors.

        Returns:
            A read-only view of the mapped file.

        Raises:
            ModelLoadError: the bytes lie outside the region (a truncated or corrupt file).
        """
        mapping = self._mapping()
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        assert self.size is not None
        if offset < 0 or nbytes > self.size - offset or self.start + self.size > len(mapping):
            raise ModelLoadError(
                f"{what}: bytes {offset}..{offset + nbytes} lie outside the file's "
                f"{self.size} (truncated or corrupt)", path=self.display)
        if count == 0:
            return np.empty(shape, dtype)
        return np.frombuffer(mapping, dtype=dtype, count=count,
                             offset=self.start + offset).reshape(shape)
