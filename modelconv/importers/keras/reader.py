"""File access for Keras models: .h5 (Keras 2 and 3) and the Keras 3 ``.keras`` zip.

Only h5py, zipfile and json are used: no Keras or TensorFlow code runs. Everything read
is untrusted, so the reader refuses HDF5 external links / external storage / virtual
datasets, zip members escaping the archive, and oversized (zip-bomb) members.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from modelconv.errors import ModelLoadError, UnsafeModelError
from modelconv.fileio import FileView

#: largest config.json we parse
MAX_CONFIG_BYTES = 64 * 2**20
#: largest total uncompressed size of a .keras archive
MAX_ARCHIVE_BYTES = 16 * 2**30
#: largest compression ratio of one zip member before it counts as a zip bomb
MAX_ZIP_RATIO = 200
#: largest single weight tensor
MAX_TENSOR_BYTES = 8 * 2**30


@dataclass
class KerasFile:
    """An opened Keras model file: its parsed config and an open weights HDF5 file.

    ``kind == "savedmodel"``: a tf.keras SavedModel folder; ``h5`` is then a
    :class:`~modelconv.importers.tf.keras_route.SavedModelWeights` (tensor bundle).
    """

    path: str
    kind: str  # "h5", "keras" or "savedmodel"
    config: dict[str, Any]
    h5: Any  # h5py.File holding the weights (savedmodel: SavedModelWeights)
    keras_version: str = ""
    #: the HDF5 bytes as a mapped file: weights become views of it, not copies
    view: FileView | None = None
    _tmpdir: str | None = None
    _closers: list[Any] = field(default_factory=list)

    @property
    def major(self) -> int:
        """Keras major version that wrote the file (2 or 3)."""
        if self.kind == "keras":
            return 3
        return 3 if self.keras_version.startswith("3") else 2

    def close(self) -> None:
        """Close the HDF5 file and remove temporary files."""
        with contextlib.suppress(Exception):
            self.h5.close()
        for closer in self._closers:
            with contextlib.suppress(Exception):
                closer.close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> KerasFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_keras_file(path: str | os.PathLike[str]) -> KerasFile:
    """Open a .h5/.hdf5 or .keras file safely (no code runs)."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError("file not found", path=str(p))
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK"):
        return _open_zip(p)
    if head == b"\x89HDF\r\n\x1a\n":
        return _open_h5(p)
    raise ModelLoadError("not a Keras model (neither HDF5 nor a .keras zip)", path=str(p))


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from modelconv.errors import MissingDependencyError

        raise MissingDependencyError("h5py", "keras", "Reading Keras files") from exc
    return h5py


def open_h5(path: str | os.PathLike[str] | io.RawIOBase, display: str | None = None) -> Any:
    """Open an HDF5 file (a path, or a binary file object) read-only and check it has no
    external references."""
    h5py = _h5py()
    shown = display or str(path)
    try:
        f = h5py.File(path if isinstance(path, io.RawIOBase) else str(path), "r")
    except Exception as exc:  # h5py raises OSError/ValueError on corrupt data
        raise ModelLoadError(
            f"corrupt or truncated HDF5 file ({_first_line(exc)})", path=shown
        ) from exc
    try:
        check_h5_safety(f, shown)
    except BaseException:
        f.close()
        raise
    return f


def check_h5_safety(f: Any, display: str) -> None:
    """Refuse external links, external raw storage and virtual datasets."""
    h5py = _h5py()
    problems: list[str] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            problems.append(f"'{name}' is an external link to {link.filename}:{link.path}")

    try:
        f.visititems_links(visit)
        datasets: list[tuple[str, Any]] = []
        f.visititems(lambda n, o: datasets.append((n, o)) if isinstance(o, h5py.Dataset)
                     else None)
    except Exception as exc:
        raise ModelLoadError(
            f"corrupt HDF5 structure ({_first_line(exc)})", path=display
        ) from exc
    for name, ds in datasets:
        if ds.external:
            problems.append(f"dataset '{name}' keeps its data in external file(s)")
        if ds.is_virtual:
            problems.append(f"dataset '{name}' is a virtual dataset (maps other files)")
    if problems:
        raise UnsafeModelError(
            "HDF5 file references data outside itself: " + "; ".join(problems[:5]),
            path=display,
            hint="modelconv only reads self-contained model files",
        )


def read_dataset(ds: Any, display: str, expected: tuple[int, ...] | None = None,
                 view: FileView | None = None) -> np.ndarray:
    """Read one weight dataset after checking dtype, declared shape and size.

    Args:
        ds: an h5py dataset (or a stand-in with ``name``, ``shape``, ``dtype``, ``[()]``).
        display: the file, for errors.
        expected: the shape the layer needs (None: any).
        view: the HDF5 file mapped; a contiguous, unfiltered dataset is returned as a
            read-only view of it (nothing copied) instead of being read.

    Returns:
        The weight.

    Raises:
        ModelLoadError: wrong shape, non-numeric dtype, oversized or unreadable data.
    """
    shape = tuple(int(d) for d in ds.shape)
    if expected is not None and shape != tuple(expected):
        raise ModelLoadError(
            f"weight '{ds.name}' has shape {shape}, the layer config needs {tuple(expected)}",
            path=display,
        )
    if ds.dtype.kind not in "fiub":
        raise ModelLoadError(f"weight '{ds.name}' has non-numeric dtype {ds.dtype}",
                             path=display)
    nbytes = int(np.prod(shape, dtype=object)) * ds.dtype.itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise ModelLoadError(f"weight '{ds.name}' declares {nbytes} bytes", path=display)
    offset = _contiguous_offset(ds, nbytes) if view is not None else None
    if view is not None and offset is not None:
        return view.array(offset, ds.dtype, shape, f"weight '{ds.name}'")
    try:
        return np.asarray(ds[()])
    except Exception as exc:
        raise ModelLoadError(
            f"cannot read weight '{ds.name}' (truncated or corrupt: {_first_line(exc)})",
            path=display,
        ) from exc


def _contiguous_offset(ds: Any, nbytes: int) -> int | None:
    """Where a dataset's bytes start in its HDF5 file, when they are stored there in one
    contiguous, unfiltered block of exactly ``nbytes`` (else None: read it through h5py)."""
    if ds.dtype.kind not in "fiu" or getattr(ds, "chunks", True) is not None or nbytes == 0:
        return None
    try:
        offset = ds.id.get_offset()
        stored = ds.id.get_storage_size()
    except Exception:  # a stand-in or an odd layout: read it through h5py instead
        return None
    return int(offset) if offset is not None and int(stored) == nbytes else None


def attr_text(value: Any, what: str = "an HDF5 attribute") -> str:
    """An HDF5 string attribute as text, refusing bytes that are not valid UTF-8.

    h5py hands back invalid UTF-8 either as ``bytes`` or as ``str`` with surrogate escapes;
    neither can name a dataset or be printed, so both are refused here.

    Args:
        value: the attribute value.
        what: what it is, for the message.

    Returns:
        The text.

    Raises:
        ModelLoadError: the value is not valid UTF-8.
    """
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        text.encode("utf-8")
    except UnicodeError as exc:
        raise ModelLoadError(f"{what} is not valid UTF-8 text (the file is corrupt)") from exc
    return text


def _open_h5(p: Path) -> KerasFile:
    f = open_h5(p)
    try:
        if "model_config" not in f.attrs:
            raise ModelLoadError(
                "HDF5 file has no 'model_config' attribute (weights-only file?)", path=str(p),
                hint="Save the whole model (model.save), not only its weights",
            )
        config = _parse_json(attr_text(f.attrs["model_config"], "model_config"), str(p))
        version = attr_text(f.attrs.get("keras_version", ""), "keras_version")
        if "model_weights" not in f:
            raise ModelLoadError("HDF5 file has no 'model_weights' group", path=str(p))
    except BaseException:
        f.close()
        raise
    return KerasFile(str(p), "h5", config, f, keras_version=version, view=FileView(p))


def _parse_json(text: str | bytes, display: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"model config is not valid JSON ({exc})", path=display) from exc
    if not isinstance(data, dict) or "class_name" not in data:
        raise ModelLoadError("model config has no 'class_name'", path=display)
    return data


def check_zip_members(zf: zipfile.ZipFile, display: str) -> None:
    """Refuse members escaping the archive and zip bombs."""
    total = 0
    for info in zf.infolist():
        name = info.filename
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or ":" in name.split("/")[0]:
            raise UnsafeModelError(f"zip member '{name}' escapes the archive", path=display)
        total += info.file_size
        if info.compress_size and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1024):
            raise UnsafeModelError(
                f"zip member '{name}' expands {info.file_size // info.compress_size}x "
                "(zip bomb?)", path=display)
    if total > MAX_ARCHIVE_BYTES:
        raise UnsafeModelError(f"archive expands to {total} bytes", path=display)


def _read_member(zf: zipfile.ZipFile, name: str, limit: int, display: str) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise ModelLoadError(f"'{name}' is too large ({info.file_size} bytes)", path=display)
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnsafeModelError(f"'{name}' expands beyond its declared size", path=display)
    return data


def _open_zip(p: Path) -> KerasFile:
    display = str(p)
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"corrupt or truncated .keras archive ({exc})", path=display) from exc
    with zf:
        check_zip_members(zf, display)
        names = set(zf.namelist())
        if "config.json" not in names or "model.weights.h5" not in names:
            raise ModelLoadError(
                ".keras archive lacks config.json or model.weights.h5", path=display
            )
        try:
            config = _parse_json(_read_member(zf, "config.json", MAX_CONFIG_BYTES, display),
                                 display)
            version = ""
            if "metadata.json" in names:
                meta = json.loads(_read_member(zf, "metadata.json", 2**20, display))
                version = str(meta.get("keras_version", "")) if isinstance(meta, dict) else ""
            member = zf.getinfo("model.weights.h5")
            start = stored_member_start(p, member, display)
            tmpdir = None
            if start is None:  # compressed: extracted to a temporary file, read from there
                tmpdir = tempfile.mkdtemp(prefix="modelconv-keras-")
                target = os.path.join(tmpdir, "model.weights.h5")
                _extract_bounded(zf, "model.weights.h5", target, display)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ModelLoadError(f"corrupt .keras archive ({exc})", path=display) from exc
    shown = f"{display}!model.weights.h5"
    if start is None:
        source: Any = target
        view = FileView(target, display=shown)
    else:  # stored (Keras' default): HDF5 read in place, weights mapped from the archive
        source = _Window(p, start, member.file_size)
        view = FileView(p, start, member.file_size, display=shown)
    try:
        h5 = open_h5(source, display=shown)
    except BaseException:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        if isinstance(source, _Window):
            source.close()
        raise
    return KerasFile(display, "keras", config, h5, keras_version=version or "3", view=view,
                     _tmpdir=tmpdir, _closers=[source] if isinstance(source, _Window) else [])


def stored_member_start(archive: Path, info: zipfile.ZipInfo, display: str) -> int | None:
    """Where an uncompressed zip member's bytes start in the archive (None: compressed or
    encrypted, so it must be extracted).

    Args:
        archive: the zip file.
        info: the member (from the central directory).
        display: the archive, for errors.

    Returns:
        The byte offset of the member's data, or None.

    Raises:
        ModelLoadError: the member's local header is corrupt or its data lies past the end.
    """
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 \
            or info.compress_size != info.file_size:
        return None
    with open(archive, "rb") as fh:
        fh.seek(info.header_offset)
        head = fh.read(30)
        size = os.fstat(fh.fileno()).st_size
    if len(head) != 30 or head[:4] != b"PK\x03\x04":
        raise ModelLoadError(f"zip member '{info.filename}' has a corrupt local header",
                             path=display)
    name_len, extra_len = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30],
                                                                                "little")
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > size:
        raise ModelLoadError(f"zip member '{info.filename}' lies past the end of the archive "
                             "(truncated)", path=display)
    return start


class _Window(io.RawIOBase):
    """A read-only file object over bytes ``start..start+size`` of a file (an uncompressed
    zip member), for h5py's file-object driver."""

    def __init__(self, path: Path, start: int, size: int) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 - closed with the window
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._size - self._pos))
        if count == 0:
            return 0
        self._fh.seek(self._start + self._pos)
        got = self._fh.readinto(view[:count])
        self._pos += got
        return got

    def close(self) -> None:
        self._fh.close()
        super().close()


def _extract_bounded(zf: zipfile.ZipFile, name: str, target: str, display: str) -> None:
    info = zf.getinfo(name)
    limit = info.file_size
    written = 0
    with zf.open(info) as src, open(target, "wb") as dst:
        while chunk := src.read(2**20):
            written += len(chunk)
            if written > limit or written > MAX_ARCHIVE_BYTES:
                raise UnsafeModelError(f"'{name}' expands beyond its declared size",
                                       path=display)
            dst.write(chunk)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
