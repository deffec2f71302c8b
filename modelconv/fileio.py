"""Atomic output: write into a temporary folder beside the target, then rename.

A failed conversion leaves nothing behind; companion files (``.onnx.data``) are moved
before the main file so a reader never sees a model whose data is missing.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelconv.errors import ExportError, OutputExistsError
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
