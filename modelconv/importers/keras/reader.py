"""File access for Keras models: .h5 (Keras 2 and 3) and the Keras 3 ``.keras`` zip.

Only h5py, zipfile and json are used: no Keras or TensorFlow code runs. Everything read
is untrusted, so the reader refuses HDF5 external links / external storage / virtual
datasets, zip members escaping the archive, and oversized (zip-bomb) members.
"""

from __future__ import annotations

import contextlib
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


def open_h5(path: str | os.PathLike[str], display: str | None = None) -> Any:
    """Open an HDF5 file read-only and check it has no external references."""
    h5py = _h5py()
    shown = display or str(path)
    try:
        f = h5py.File(str(path), "r")
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


def read_dataset(ds: Any, display: str, expected: tuple[int, ...] | None = None) -> np.ndarray:
    """Read one weight dataset after checking dtype, declared shape and size."""
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
    try:
        return np.asarray(ds[()])
    except Exception as exc:
        raise ModelLoadError(
            f"cannot read weight '{ds.name}' (truncated or corrupt: {_first_line(exc)})",
            path=display,
        ) from exc


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
    return KerasFile(str(p), "h5", config, f, keras_version=version)


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
            tmpdir = tempfile.mkdtemp(prefix="modelconv-keras-")
            target = os.path.join(tmpdir, "model.weights.h5")
            _extract_bounded(zf, "model.weights.h5", target, display)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ModelLoadError(f"corrupt .keras archive ({exc})", path=display) from exc
    try:
        h5 = open_h5(target, display=f"{display}!model.weights.h5")
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return KerasFile(display, "keras", config, h5, keras_version=version or "3", _tmpdir=tmpdir)


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
